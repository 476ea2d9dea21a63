"""Scale out: HTCondor job folders for the workflow steps (submit descriptions, wrappers)."""
