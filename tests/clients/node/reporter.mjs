// node:test reporter writing one JSON object per line, for run_clients.py:
//   {"kind":"result","name":...,"outcome":"pass"|"fail"|"skip","error":...,"ms":...}
//   {"kind":"summary","name":...,"summary":...}   (from the scenario wrapper's diagnostics)
// Only top-level tests (nesting 0) are reported; the scenarios have no subtests.
const SUMMARY_PREFIX = 'summary ';

function resultLine(type, data) {
  const skipped = data.skip !== undefined || data.todo !== undefined;
  const outcome = type === 'test:pass' ? (skipped ? 'skip' : 'pass') : 'fail';
  const error = data.details?.error;
  return {
    kind: 'result',
    name: data.name,
    outcome,
    error: error ? String(error.cause?.message ?? error.message ?? error) : undefined,
    ms: Math.round(data.details?.duration_ms ?? 0),
  };
}

export default async function* jsonLines(source) {
  for await (const event of source) {
    const { type, data } = event;
    if ((type === 'test:pass' || type === 'test:fail') && data.nesting === 0) {
      yield `${JSON.stringify(resultLine(type, data))}\n`;
    } else if (type === 'test:diagnostic' && data.message.startsWith(SUMMARY_PREFIX)) {
      yield `${JSON.stringify({ kind: 'summary', ...JSON.parse(data.message.slice(SUMMARY_PREFIX.length)) })}\n`;
    }
  }
}
