// The test form: a request body, Predict, and the answer or the error with its round-trip time.
import { useId, useState } from "react";
import { send, useTrait, type CardModel } from "./model";

function Outcome({ model }: { model: CardModel }) {
  const result = useTrait(model, "result");
  const error = useTrait(model, "error");
  const elapsedMs = useTrait(model, "elapsed_ms");
  const busy = useTrait(model, "busy");

  let body;
  if (busy) body = <span className="nstarx-card__note">Waiting for the answer…</span>;
  else if (error) {
    body = (
      <div className="nstarx-card__error" role="alert">
        {error}
      </div>
    );
  } else if (result) body = <pre className="nstarx-card__response">{result}</pre>;
  else body = <span className="nstarx-card__note">No request sent yet.</span>;

  return (
    <div className="nstarx-card__result" data-testid="nstarx-card-result" aria-live="polite">
      {body}
      {!busy && elapsedMs !== null && (
        <span className="nstarx-card__elapsed" title="Round-trip time">
          {elapsedMs.toFixed(1)} ms
        </span>
      )}
    </div>
  );
}

/** Keyed by the example upstream, so a new example from Python resets the text. */
export function PredictForm({ model, example }: { model: CardModel; example: string }) {
  const [body, setBody] = useState(example);
  const busy = useTrait(model, "busy");
  const id = useId();

  return (
    <section className="nstarx-card__predict">
      <label className="nstarx-card__label" htmlFor={id}>
        Test request
      </label>
      <textarea
        id={id}
        className="nstarx-card__request"
        title="Request JSON: one record, a list of records, or {'instances': [...]}"
        spellCheck={false}
        rows={Math.min(12, Math.max(3, body.split("\n").length))}
        value={body}
        onChange={(e) => {
          setBody(e.target.value);
        }}
      />
      <div className="nstarx-card__row">
        <button
          type="button"
          className="nstarx-card__primary"
          title="Send the request to the deployment"
          disabled={busy}
          onClick={() => {
            send(model, { type: "predict", body });
          }}
        >
          {busy ? "Predicting…" : "Predict"}
        </button>
      </div>
      <Outcome model={model} />
    </section>
  );
}
