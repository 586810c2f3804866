"""kmtool: build, boot and inspect a small higher-half x86-64 kernel and its memory manager."""

__version__ = "0.1.0"
