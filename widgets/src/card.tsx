// The deployment card widget: anywidget's entry point, rendering one React tree per view.
import type { Render } from "@anywidget/types";
import { createRoot } from "react-dom/client";
import { Access } from "./access";
import "./card.css";
import { Header } from "./header";
import { useTrait, type CardModel, type CardState } from "./model";
import { PredictForm } from "./predict";
import { DriftLine, UsageLine } from "./usage";

function Card({ model }: { model: CardModel }) {
  const example = useTrait(model, "example");
  return (
    <div className="nstarx-card" data-testid="nstarx-card">
      <Header model={model} />
      <UsageLine model={model} />
      <DriftLine model={model} />
      <Access model={model} />
      <PredictForm key={example} model={model} example={example} />
    </div>
  );
}

const render: Render<CardState> = ({ model, el }) => {
  const root = createRoot(el);
  root.render(<Card model={model} />);
  return () => {
    root.unmount();
  };
};

export default { render };
