"""Virtual machines: the mirror of libvirt domains, their pages and actions."""
