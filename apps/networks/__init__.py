"""Virtual networks and host interfaces."""
