# The documentation site (docs/, mkdocs.yml): mkdocs-material, the API reference by mkdocstrings from the
# docstrings, built in strict mode (a broken link or reference fails the build).
#   make docs          site/ (open site/index.html)
#   make docs-serve    live preview on http://127.0.0.1:8000
# tests/test_docs_site.py builds the site and looks at it with headless Chromium, so make setup (and make test)
# install Debian's chromium. The VM guests do not run that test and do not get it.

DOCS_DEB_PACKAGES := chromium

.PHONY: docs docs-serve docs-deps

docs-deps: $(STAMPS)/docs-deb
$(STAMPS)/docs-deb: mk/docs.mk $(STAMPS)/deb
	@missing=""; for p in $(DOCS_DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the docs:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $(DOCS_DEB_PACKAGES) >/dev/null; \
	fi
	@touch $@

docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

setup: docs-deps
test: docs-deps
