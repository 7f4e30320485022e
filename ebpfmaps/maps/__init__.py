"""Map classes, one module per family of kernel map types."""
