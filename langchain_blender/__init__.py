"""LLM-Blender components for LangChain."""
