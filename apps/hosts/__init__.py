"""libvirt hosts: their connections and credentials, hostd, and the inventory reconcile."""
