// A labelled integer input: what is typed stays as typed; only valid whole numbers go out.
import { useState } from "react";

interface NumberFieldProps {
  readonly label: string;
  readonly value: number;
  readonly onChange: (value: number) => void;
  readonly min?: number;
  readonly max?: number;
  readonly disabled?: boolean;
}

function isValid(text: string, min?: number, max?: number): boolean {
  const value = Number(text);
  return (
    text.trim() !== "" &&
    Number.isInteger(value) &&
    (min === undefined || value >= min) &&
    (max === undefined || value <= max)
  );
}

/** `<label>` + `<input type=number>`; an invalid entry is flagged and keeps the last value. */
export function NumberField({ label, value, onChange, min, max, disabled }: NumberFieldProps) {
  const [text, setText] = useState(String(value));
  const valid = isValid(text, min, max);
  return (
    <label className="nstarx-sidebar__number">
      <span>{label}</span>
      <input
        type="number"
        className="jp-mod-styled"
        value={text}
        min={min}
        max={max}
        step={1}
        disabled={disabled}
        aria-invalid={!valid}
        onChange={(event) => {
          const next = event.currentTarget.value;
          setText(next);
          if (isValid(next, min, max)) onChange(Number(next));
        }}
      />
    </label>
  );
}
