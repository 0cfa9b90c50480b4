// The document widget: the editor on a `*.pipeline.json` file's model (the one source of
// truth: canvas edits write the model, the model's changes redraw the canvas).
import { ReactWidget } from "@jupyterlab/apputils";
import { ABCWidgetFactory, DocumentWidget, type DocumentRegistry } from "@jupyterlab/docregistry";
import { PipelineEditor, type TextSource } from "./Editor";

/** The model's text as the editor reads, writes and watches it. */
function textSource(context: DocumentRegistry.Context): TextSource {
  return {
    read: () => context.model.toString(),
    write: (text) => {
      if (text === context.model.toString()) return;
      context.model.fromString(text);
      context.model.dirty = true; // setSource alone leaves the document "saved"
    },
    subscribe: (onChange) => {
      context.model.contentChanged.connect(onChange);
      return () => {
        context.model.contentChanged.disconnect(onChange);
      };
    },
  };
}

/** The React host of the editor inside the document widget. */
class PipelinePanel extends ReactWidget {
  private readonly source: TextSource;

  constructor(private readonly context: DocumentRegistry.Context) {
    super();
    this.source = textSource(context);
    this.addClass("nstarx-pipeline-doc");
  }

  protected render() {
    if (!this.context.isReady) return <div className="nstarx-pipeline-doc__loading">Loading…</div>;
    return <PipelineEditor source={this.source} />;
  }
}

export class PipelineDocument extends DocumentWidget<PipelinePanel> {}

/** Opens `*.pipeline.json` files in the editor once their content has loaded. */
export class PipelineFactory extends ABCWidgetFactory<PipelineDocument> {
  protected createNewWidget(context: DocumentRegistry.Context): PipelineDocument {
    const content = new PipelinePanel(context);
    const widget = new PipelineDocument({ content, context });
    void context.ready.then(() => {
      content.update();
    });
    return widget;
  }
}
