"""``python -m blender_core.cli``: the same commands as the ``blender`` script."""

from blender_core.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
