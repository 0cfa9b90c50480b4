// The scopes of a key minted from the lab: the same rule as the server extension's
// (nstarx_jupyter/labapi/scopes.py), checked here so the form says why before it is sent.

/** What a key minted here may carry: the server extension refuses anything else (403). */
const LAB_SCOPES = "predict:NAME, manage:NAME or metrics";

/** The form's hint under the scopes field. */
export const LAB_SCOPES_HINT = `${LAB_SCOPES} of named deployments: no admin, no *`;

/** The placeholder of the scopes field. */
export const SCOPES_PLACEHOLDER = "predict:iris";

/** The scopes to suggest: calling the first deployment, when there is one. */
export function suggestedScopes(deployments: readonly { name: string }[]): string {
  const first = deployments[0];
  return first === undefined ? "" : `predict:${first.name}`;
}

/** Scopes typed as `a, b c`; null when there is none. */
export function parseScopes(text: string): [string, ...string[]] | null {
  const [first, ...rest] = text.split(/[\s,]+/).filter((scope) => scope !== "");
  return first === undefined ? null : [first, ...rest];
}

/**
 * Why the lab would refuse these scopes (`admin`, or a `*` wildcard); null when it would not.
 * The key lands in this page, so it names the deployments it may call or manage.
 */
export function scopeProblem(scopes: readonly string[]): string | null {
  const refused = scopes.find((scope) => scope === "admin" || scope.split(":").pop() === "*");
  return refused === undefined
    ? null
    : `the lab does not mint '${refused}' keys: use ${LAB_SCOPES}`;
}
