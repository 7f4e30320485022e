# The Prometheus exporter's tests scrape it with a real Prometheus server (Debian's prometheus
# package). The package's own service is never wanted here: the tests start private servers on
# free ports, so a service the package's maintainer scripts start is stopped again.

EXPORTER_DEB_PACKAGES := prometheus

.PHONY: exporter-deb
exporter-deb: $(STAMPS)/exporter-deb
$(STAMPS)/exporter-deb: mk/exporter.mk $(STAMPS)/deb
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(EXPORTER_DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1; \
	  apt-get install -y -q --no-install-recommends $(EXPORTER_DEB_PACKAGES) >/dev/null || \
	    { apt-get update -q && apt-get install -y -q --no-install-recommends $(EXPORTER_DEB_PACKAGES) >/dev/null; }; \
	  if command -v systemctl >/dev/null && systemctl is-active -q prometheus 2>/dev/null; then \
	    systemctl disable --now -q prometheus prometheus-node-exporter 2>/dev/null || true; fi; \
	fi
	@test -x /usr/bin/prometheus
	@touch $@

setup: exporter-deb
