"""LLM-Blender components for LlamaIndex."""
