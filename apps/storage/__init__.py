"""Storage pools, volumes, the ISO library, uploads and downloads."""
