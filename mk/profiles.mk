# Profiles: run the profile examples under both profiles, each in a fresh process.
#   make profiles-examples

PROFILE_EXAMPLES := $(wildcard examples/profile_*.py)

.PHONY: profiles-examples
profiles-examples: setup
	@set -e; for p in cloud embedded; do for f in $(PROFILE_EXAMPLES); do \
	  echo "== EBPFMAPS_PROFILE=$$p $$f"; EBPFMAPS_PROFILE=$$p $(PY) $$f; \
	done; done
