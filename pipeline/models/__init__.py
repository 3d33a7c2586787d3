"""Model architectures and builders: tiny configs of the real architectures, the shapes CNN, tokenizers."""
