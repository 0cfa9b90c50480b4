// The selected node's label, its config form (from the component's JSON Schema) and problems.
import { memo } from "react";
import type { StepData } from "./graph";
import { SchemaForm } from "./SchemaForm";
import type { ComponentInfo, FieldChoices } from "./types";

interface PropertiesProps {
  id: string;
  data: StepData;
  info: ComponentInfo | undefined;
  problems: readonly string[];
  choices?: FieldChoices;
  onChange: (id: string, data: Partial<StepData>) => void;
}

export const Properties = memo(function Properties(props: PropertiesProps) {
  const { id, data, info, problems, choices, onChange } = props;
  return (
    <section className="nstarx-flow__section" data-testid="flow-properties">
      <h4>
        {info?.title ?? data.component} <code>{id}</code>
      </h4>
      {info?.description && <p className="nstarx-flow__help">{info.description}</p>}
      <div className="nstarx-flow__field">
        <label htmlFor={`nstarx-flow-label-${id}`}>Label</label>
        <input
          id={`nstarx-flow-label-${id}`}
          name="label"
          type="text"
          placeholder={id}
          value={data.label ?? ""}
          onChange={(event) => {
            onChange(id, { label: event.target.value === "" ? null : event.target.value });
          }}
        />
      </div>
      {info ? (
        <SchemaForm
          key={id}
          schema={info.config_schema}
          value={data.config}
          choices={choices}
          onChange={(config) => {
            onChange(id, { config });
          }}
        />
      ) : (
        <p className="nstarx-flow__help">Unknown component '{data.component}'.</p>
      )}
      {problems.length > 0 && (
        <ul
          className="nstarx-flow__problems nstarx-flow__problems--node"
          data-testid="node-problems"
        >
          {problems.map((message) => (
            <li key={message}>{message}</li>
          ))}
        </ul>
      )}
    </section>
  );
});
