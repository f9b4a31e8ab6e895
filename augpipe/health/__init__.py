"""Dataset health: what is wrong with a source or an expanded dataset before it trains."""
