"""fcloop: fine-tune chat LLMs for function calling with LoRA, in a hand-written PyTorch loop."""
