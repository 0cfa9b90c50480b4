// The side panel's sections: the problems list, the test run (sample and output) and the
// deployment's endpoint.
import { memo, useState } from "react";
import type { DeploymentInfo, Problem, RunResult } from "./types";

interface ProblemsProps {
  problems: readonly Problem[];
  onSelect: (target: Problem["target"], id: string) => void;
}

export const ProblemsList = memo(function ProblemsList({ problems, onSelect }: ProblemsProps) {
  return (
    <section className="nstarx-flow__section">
      <h4>Problems ({problems.length})</h4>
      <ul className="nstarx-flow__problems" data-testid="flow-problems">
        {problems.length === 0 && <li className="nstarx-flow__ok">The pipeline is valid.</li>}
        {problems.map((problem, i) => {
          const where = problem.id ? `${problem.target} ${problem.id}` : "pipeline";
          const { id } = problem;
          return (
            <li key={`${String(i)}-${problem.code}`} data-code={problem.code}>
              {id ? (
                <button
                  type="button"
                  className="nstarx-flow__link"
                  onClick={() => {
                    onSelect(problem.target, id);
                  }}
                >
                  {where}
                </button>
              ) : (
                <strong>{where}</strong>
              )}
              : {problem.message}
            </li>
          );
        })}
      </ul>
    </section>
  );
});

interface RunProps {
  sample: Record<string, unknown>;
  result: RunResult | null;
  onSample: (text: string) => void;
}

/** The sample record as editable JSON text, and the last run's output or error. */
export function RunPanel({ sample, result, onSample }: RunProps) {
  const [text, setText] = useState(() => JSON.stringify(sample, null, 2));
  const [seen, setSeen] = useState(sample);
  if (seen !== sample) {
    setSeen(sample);
    setText(JSON.stringify(sample, null, 2));
  }
  return (
    <section className="nstarx-flow__section">
      <h4>Test run</h4>
      <label htmlFor="nstarx-flow-sample">Sample record (JSON)</label>
      <textarea
        id="nstarx-flow-sample"
        data-testid="flow-sample"
        rows={5}
        spellCheck={false}
        value={text}
        onChange={(event) => {
          setText(event.target.value);
          onSample(event.target.value);
        }}
      />
      <div className="nstarx-flow__output" data-testid="flow-output">
        {result === null ? (
          <span className="nstarx-flow__help">Run the pipeline to see its output.</span>
        ) : result.error ? (
          <div className="nstarx-flow__run--error">
            {result.node ? `${result.node}: ` : ""}
            {result.error}
          </div>
        ) : (
          <>
            {result.ms !== undefined && <div>{result.ms.toFixed(1)} ms</div>}
            <pre>{JSON.stringify(result.output, null, 2)}</pre>
          </>
        )}
      </div>
    </section>
  );
}

export function DeploymentBox({ deployment }: { deployment: DeploymentInfo }) {
  return (
    <section className="nstarx-flow__section" data-testid="flow-deployment">
      <h4>Deployment {deployment.name}</h4>
      <div>
        Endpoint: <code data-testid="flow-deployment-url">{deployment.url}</code>
      </div>
      {deployment.key && <div>Key: {deployment.key}…</div>}
      {deployment.curl && <pre>{deployment.curl}</pre>}
    </section>
  );
}
