// A small form for the JSON Schemas pydantic emits for component configs: strings, numbers,
// booleans, enums, lists of scalars as comma-separated text, anything else as JSON text.
// Python validates the result (and the canvas shows its problems), so this form only edits.
import { memo, useId, useState } from "react";
import type { Choice, FieldChoices, JsonSchema } from "./types";

type Config = Record<string, unknown>;

interface FormProps {
  schema: JsonSchema;
  value: Config;
  onChange: (value: Config) => void;
  /** Values a text field suggests, by field name (any other value can still be typed). */
  choices?: FieldChoices;
}

const NO_CHOICES: FieldChoices = {};

/** One input per property of `schema`; a field left empty is removed (its default applies). */
export const SchemaForm = memo(function SchemaForm(props: FormProps) {
  const { schema, value, onChange, choices = NO_CHOICES } = props;
  const properties = Object.entries(resolve(schema, schema).properties ?? {});
  const required = new Set(schema.required ?? []);
  const known = new Set(properties.map(([name]) => name));
  const unknown = Object.keys(value).filter((name) => !known.has(name));
  const set = (name: string, next: unknown) => {
    const rest = Object.entries(value).filter(([key]) => key !== name);
    onChange(Object.fromEntries(next === undefined ? rest : [...rest, [name, next]]));
  };
  return (
    <div className="nstarx-flow__form">
      {properties.map(([name, property]) => (
        <Field
          key={name}
          name={name}
          schema={resolve(property, schema)}
          required={required.has(name)}
          value={value[name]}
          choices={choices[name]}
          onChange={(next) => {
            set(name, next);
          }}
        />
      ))}
      {unknown.length > 0 && (
        <p className="nstarx-flow__help">Unknown config keys: {unknown.join(", ")}</p>
      )}
    </div>
  );
});

type Shape = "enum" | "string" | "number" | "integer" | "boolean" | "list" | "scalar" | "json";

interface FieldProps {
  name: string;
  schema: JsonSchema;
  required: boolean;
  value: unknown;
  choices: readonly Choice[] | undefined;
  onChange: (value: unknown) => void;
}

function Field({ name, schema, required, value, choices, onChange }: FieldProps) {
  const id = useId();
  const shape = shapeOf(schema);
  const title = schema.title ?? name;
  return (
    <div className={`nstarx-flow__field nstarx-flow__field--${shape}`} data-field={name}>
      <label htmlFor={id}>
        {title}
        {required && <span className="nstarx-flow__required"> *</span>}
      </label>
      <Input
        id={id}
        name={name}
        shape={shape}
        schema={schema}
        value={value}
        choices={shape === "string" || shape === "scalar" ? choices : undefined}
        onChange={onChange}
      />
      {schema.description && <div className="nstarx-flow__help">{schema.description}</div>}
    </div>
  );
}

interface InputProps {
  id: string;
  name: string;
  shape: Shape;
  schema: JsonSchema;
  value: unknown;
  choices: readonly Choice[] | undefined;
  onChange: (value: unknown) => void;
}

function Input({ id, name, shape, schema, value, choices, onChange }: InputProps) {
  const placeholder = schema.default === undefined ? "" : formatScalar(schema.default);
  switch (shape) {
    case "enum":
      return (
        <select
          id={id}
          name={name}
          value={value === undefined ? "" : JSON.stringify(value)}
          onChange={(event) => {
            onChange(event.target.value === "" ? undefined : JSON.parse(event.target.value));
          }}
        >
          <option value="">{placeholder ? `default (${placeholder})` : "—"}</option>
          {(enumOf(schema) ?? []).map((option) => (
            <option key={JSON.stringify(option)} value={JSON.stringify(option)}>
              {String(option)}
            </option>
          ))}
        </select>
      );
    case "boolean":
      return (
        <input
          id={id}
          name={name}
          type="checkbox"
          checked={value === undefined ? schema.default === true : value === true}
          onChange={(event) => {
            onChange(event.target.checked);
          }}
        />
      );
    case "json":
      return (
        <TextInput
          id={id}
          name={name}
          value={value}
          placeholder={placeholder}
          multiline
          format={(v) => JSON.stringify(v, null, 2)}
          parse={parseJson}
          onChange={onChange}
        />
      );
    default:
      return (
        <TextInput
          id={id}
          name={name}
          value={value}
          placeholder={shape === "list" ? "comma-separated" : placeholder}
          numeric={shape === "number" || shape === "integer"}
          choices={choices}
          format={shape === "list" ? formatList : formatScalar}
          parse={PARSERS[shape]}
          onChange={onChange}
        />
      );
  }
}

type Parse = (text: string) => { value: unknown } | { error: string };

interface TextInputProps {
  id: string;
  name: string;
  value: unknown;
  placeholder: string;
  format: (value: unknown) => string;
  parse: Parse;
  onChange: (value: unknown) => void;
  multiline?: boolean;
  numeric?: boolean;
  /** Offered in a datalist: picked from a list, or typed. */
  choices?: readonly Choice[] | undefined;
}

/** Text the user types is kept as typed; the parsed value goes out when it is valid. */
function TextInput(props: TextInputProps) {
  const { id, name, value, placeholder, format, parse, onChange, multiline, numeric, choices } =
    props;
  const listId = choices && choices.length > 0 ? `${id}-choices` : undefined;
  const shown = value === undefined ? "" : format(value);
  const [text, setText] = useState(shown);
  const [error, setError] = useState("");
  const [seen, setSeen] = useState(shown);
  if (seen !== shown) {
    // A change from elsewhere (undo, Python) replaces the text unless it already says the same.
    setSeen(shown);
    const parsed = text.trim() === "" ? { value: undefined } : parse(text);
    if (!("value" in parsed && same(parsed.value, value))) {
      setText(shown);
      setError("");
    }
  }
  const edit = (next: string) => {
    setText(next);
    const parsed = next.trim() === "" ? { value: undefined } : parse(next);
    if ("error" in parsed) {
      setError(parsed.error);
      return;
    }
    setError("");
    onChange(parsed.value);
  };
  const common = {
    id,
    name,
    value: text,
    placeholder,
    "aria-invalid": error !== "",
    title: error || undefined,
  };
  return (
    <>
      {multiline ? (
        <textarea
          {...common}
          rows={4}
          spellCheck={false}
          onChange={(e) => {
            edit(e.target.value);
          }}
        />
      ) : (
        <input
          {...common}
          type="text"
          inputMode={numeric ? "decimal" : undefined}
          list={listId}
          onChange={(e) => {
            edit(e.target.value);
          }}
        />
      )}
      {listId && (
        <datalist id={listId} data-testid={`choices-${name}`}>
          {choices?.map((choice) => (
            <option key={choice.value} value={choice.value} label={choice.label} />
          ))}
        </datalist>
      )}
      {error && <div className="nstarx-flow__field-error">{error}</div>}
    </>
  );
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function parseJson(text: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (error) {
    return { error: error instanceof Error ? error.message : "invalid JSON" };
  }
}

/** A scalar: JSON when it parses as a number, boolean or null, else the text itself. */
function parseScalar(text: string): { value: unknown } {
  const parsed = parseJson(text);
  if ("value" in parsed && (parsed.value === null || typeof parsed.value !== "object")) {
    return { value: parsed.value };
  }
  return { value: text };
}

function parseNumber(integer: boolean): Parse {
  return (text) => {
    const number = Number(text);
    if (!Number.isFinite(number)) return { error: "not a number" };
    if (integer && !Number.isInteger(number)) return { error: "not a whole number" };
    return { value: number };
  };
}

function parseList(text: string): { value: unknown } {
  const items = text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
  return { value: items.map((item) => parseScalar(item).value) };
}

const PARSERS: Record<Shape, Parse> = {
  enum: parseJson,
  string: (text) => ({ value: text }),
  number: parseNumber(false),
  integer: parseNumber(true),
  boolean: parseJson,
  list: parseList,
  scalar: parseScalar,
  json: parseJson,
};

function formatScalar(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function formatList(value: unknown): string {
  return Array.isArray(value) ? value.map(formatScalar).join(", ") : JSON.stringify(value);
}

const SCALARS = new Set(["string", "number", "integer", "boolean"]);

/** Which input edits values of `schema`. */
function shapeOf(schema: JsonSchema): Shape {
  if (enumOf(schema)) return "enum";
  const types = typesOf(schema);
  const single = types.length === 1 ? types[0] : undefined;
  if (single === "string" || single === "number" || single === "integer") return single;
  if (single === "boolean") return "boolean";
  if (single === "array" && schema.items && typesOf(schema.items).every((t) => SCALARS.has(t))) {
    return typesOf(schema.items).length > 0 ? "list" : "json";
  }
  if (types.length > 0 && types.every((t) => SCALARS.has(t) || t === "null")) return "scalar";
  return "json";
}

function enumOf(schema: JsonSchema): unknown[] | undefined {
  if (schema.enum) return schema.enum;
  const options = schema.anyOf?.filter((option) => !typesOf(option).includes("null"));
  if (options?.length === 1 && options[0]?.enum) return options[0].enum;
  return undefined;
}

/** The JSON types a schema admits (`anyOf` flattened; empty when it cannot tell). */
function typesOf(schema: JsonSchema): string[] {
  if (schema.anyOf ?? schema.oneOf) {
    const options = (schema.anyOf ?? schema.oneOf ?? []).map(typesOf);
    return options.some((option) => option.length === 0) ? [] : options.flat();
  }
  if (Array.isArray(schema.type)) return schema.type;
  return schema.type ? [schema.type] : [];
}

/** `schema` with `$ref`s into the root's `$defs` (and one-element `allOf`s) replaced. */
function resolve(schema: JsonSchema, root: JsonSchema, depth = 0): JsonSchema {
  if (depth > 8) return schema;
  const { $ref, allOf, ...rest } = schema;
  if ($ref?.startsWith("#/$defs/")) {
    const target = root.$defs?.[$ref.slice("#/$defs/".length)];
    if (target) return { ...resolve(target, root, depth + 1), ...rest };
  }
  if (allOf?.length === 1 && allOf[0]) return { ...resolve(allOf[0], root, depth + 1), ...rest };
  const resolved = { ...rest };
  if (rest.items) resolved.items = resolve(rest.items, root, depth + 1);
  if (rest.anyOf) resolved.anyOf = rest.anyOf.map((option) => resolve(option, root, depth + 1));
  return resolved;
}
