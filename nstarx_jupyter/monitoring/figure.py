"""Plotly `FigureWidget`s that fill the width of their output.

plotly's widget draws its figure when the view is created, before JupyterLab attaches it to the
page: plotly.js sees no width and falls back to 700 px, and nothing resizes it afterwards but a
window resize (plotly's anywidget front end gets none of JupyterLab's resize messages). On a
1,300 px notebook the figure used the left half. `figure_widget` gives the same widget with a
front end that wraps plotly's: once the view has a width, and whenever it changes, the figure is
autosized to it (by a window `resize` event, which plotly.js follows with `responsive`).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

__all__ = ["figure_widget"]

# plotly's bundle ends by exporting its widget, e.g. `export{TD as FigureModel,...,j4t as default};`
_EXPORTS = re.compile(r"export\s*\{([^{}]*)\}\s*;?")
_WRAPPER = """
export default () => {
  const inner = __nstarxPlotlyWidget();
  return {
    ...inner,
    render(context) {
      const cleanup = inner.render(context);
      let width = 0;
      const observer = new ResizeObserver((entries) => {
        const next = Math.round(entries[0]?.contentRect.width ?? 0);
        if (next <= 0 || next === width) return;
        width = next;
        window.dispatchEvent(new Event("resize"));
      });
      observer.observe(context.el);
      return () => {
        observer.disconnect();
        if (typeof cleanup === "function") cleanup();
      };
    },
  };
};
"""


@functools.cache
def _esm() -> str | None:
    """Plotly's front end with the resizing wrapper as its default export (None: not found)."""
    import plotly

    bundle = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
    text = bundle.read_text(encoding="utf-8")
    matches = list(_EXPORTS.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    names = [item.strip() for item in last.group(1).split(",") if item.strip()]
    default = [item for item in names if item.endswith(" as default")]
    if len(default) != 1:
        return None
    kept = [item for item in names if item not in default]
    inner = default[0].removesuffix(" as default").strip()
    exports = f"export{{{','.join(kept)}}};" if kept else ""
    prefix, suffix = text[: last.start()], text[last.end() :]
    return f"{prefix}{exports}const __nstarxPlotlyWidget={inner};{suffix}\n{_WRAPPER}"


@functools.cache
def _widget_class() -> type[Any]:
    import plotly.graph_objects as go

    base: type[Any] = go.FigureWidget
    esm = _esm()
    if esm is None:  # a plotly whose bundle this does not recognise: its own widget
        return base
    return type("FullWidthFigureWidget", (base,), {"_esm": esm, "__module__": __name__})


def figure_widget(figure: Any = None) -> Any:
    """A `go.FigureWidget` of `figure` (a `go.Figure`, dict or None) that fills its width."""
    widget = _widget_class()(figure)
    # plotly.js's own window `resize` handler (the widget's is only added on a JupyterLab
    # message that anywidget views never get).
    widget._config = {**widget._config, "responsive": True}
    return widget
