// One bounded HTTP request of a chaos run, with what its failure says about a write: a refused connection
// sent nothing, while a timeout or a broken connection leaves the write's fate open.

/** A request's answer, or how it failed without one. */
export type HttpResult =
  | { readonly kind: 'answer'; readonly status: number; readonly body: string; readonly role: string | null }
  | { readonly kind: 'refused' | 'timeout' | 'broken'; readonly error: string };

/** The answers kept in a history are cut to this many characters: enough for an error's code and message. */
export const answerCharsMax = 300;

function failure(err: unknown): HttpResult {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return { kind: 'timeout', error: e.message ?? 'timed out' };
  const code = e.cause?.code;
  const error = `${code ?? ''} ${e.cause?.message ?? e.message ?? String(err)}`.trim();
  return { kind: code === 'ECONNREFUSED' ? 'refused' : 'broken', error };
}

/** GET `url` within `timeoutMs`; never throws. */
export async function httpGet(url: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<HttpResult> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers });
    const body = await res.text();
    return { kind: 'answer', status: res.status, body, role: res.headers.get('x-kv-role') };
  } catch (err) {
    return failure(err);
  }
}

/** The JSON object an answer's body holds, or an empty one. */
export function jsonOf(body: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(body);
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
