// The Lumino widget hosting the React panel; it tells the panel whether it is visible.
import { ReactWidget } from "@jupyterlab/ui-components";
import type { Widget } from "@lumino/widgets";
import type { SidebarEnv } from "./context";
import { servingIcon } from "./icons";
import { Panel } from "./Panel";

// Lumino's message type, reached through a dependency we already have.
type Message = Parameters<Widget["processMessage"]>[0];

/** The "Model serving" sidebar; its content mounts when first shown, so a lab where nobody
 * opens it makes no calls. */
export class SidebarWidget extends ReactWidget {
  private opened = false;

  constructor(private readonly env: SidebarEnv) {
    super();
    this.id = "nstarx-sidebar";
    this.addClass("nstarx-sidebar");
    this.title.icon = servingIcon;
    this.title.caption = "Model serving";
  }

  protected override onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.opened = true;
    this.update();
  }

  protected override onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.update();
  }

  render() {
    if (!this.opened) return null;
    return <Panel env={this.env} active={this.isVisible} />;
  }
}
