"""The notebook side: IPython magics (and, later, the widgets' Python halves)."""
