"""The model: loading, LoRA and new-token rows, attention masks, compile, sharding, the loss."""
