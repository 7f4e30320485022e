# The Prometheus exporter's tests scrape it with a real Prometheus server: Debian's prometheus package,
# on the host and in the VM guests (mk/vm.mk installs DEB_PACKAGES there). The tests start private servers
# on free ports; on a host running systemd the package also starts its own service on :9090, which they
# leave alone.
DEB_PACKAGES += prometheus
$(STAMPS)/deb: mk/exporter.mk
