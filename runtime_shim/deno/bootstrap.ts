// A Lambda runtime for Deno handlers, with the conventions of the Node.js one.
//
// Run as `deno run <permissions> bootstrap.ts` with the Lambda environment:
// it imports the handler module named by `_HANDLER` from `LAMBDA_TASK_ROOT`
// (`mod.handler` finds `mod.ts`, `mod.js` or `mod.tsx`), then fetches events
// from the Runtime API at `AWS_LAMBDA_RUNTIME_API` and posts each result
// back. Lambda has no managed Deno runtime, so the handler signature
// (`handler(event, context)` returning a value or a promise), the context
// object, the error bodies (`{errorType, errorMessage, trace}`) and the
// console format are those of the official Node.js client,
// aws/aws-lambda-nodejs-runtime-interface-client.
//
// No dependencies beyond Deno's own APIs and its `node:util`.

import { format } from 'node:util';

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const HANDLER_EXTENSIONS = ['.ts', '.js', '.tsx'];

// Exit codes of the Node.js client after an uncaught exception and an
// unhandled rejection.
const EXIT_UNCAUGHT_EXCEPTION = 129;
const EXIT_UNHANDLED_REJECTION = 128;

type Handler = (event: unknown, context: Context) => unknown;

interface ErrorBody {
  errorType: string;
  errorMessage: string;
  trace: string[];
}

interface Context {
  awsRequestId: string;
  functionName: string | undefined;
  functionVersion: string | undefined;
  invokedFunctionArn: string | undefined;
  memoryLimitInMB: string | undefined;
  logGroupName: string | undefined;
  logStreamName: string | undefined;
  clientContext: unknown;
  identity: unknown;
  tenantId: string | undefined;
  callbackWaitsForEmptyEventLoop: boolean;
  getRemainingTimeInMillis(): number;
}

// -- errors ------------------------------------------------------------------

function runtimeError(name: string, message: string, cause?: unknown): Error {
  const error = new Error(message, cause === undefined ? undefined : { cause });
  // Not enumerable, like the `name` an Error inherits, so logs do not repeat it.
  Object.defineProperty(error, 'name', { value: `Runtime.${name}`, enumerable: false });
  return error;
}

function isErrorLike(value: unknown): value is Error {
  const candidate = value as Partial<Error> | null | undefined;
  return (
    typeof candidate?.name === 'string' &&
    typeof candidate.message === 'string' &&
    typeof candidate.stack === 'string'
  );
}

// The error body of a failed invocation or init, as the Node.js client builds it.
function toErrorBody(error: unknown): ErrorBody {
  try {
    if (error instanceof Error || isErrorLike(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: (error.stack ?? '').split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
    };
  }
}

// -- logging -----------------------------------------------------------------

let currentRequestId: string | undefined;

const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const encoder = new TextEncoder();

function writeOut(text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) {
    written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

// Replace the console methods with Lambda's text format:
// `<ISO time>\t<request id>\t<LEVEL>\t<message>`. Before the first
// invocation the request id is `undefined`, as in Lambda.
function patchConsole(): void {
  const wanted = LOG_LEVELS.indexOf((Deno.env.get('AWS_LAMBDA_LOG_LEVEL') ?? '').toUpperCase());
  const minimum = Math.max(0, wanted);
  const logger = (level: string) => {
    if (LOG_LEVELS.indexOf(level) < minimum) {
      return () => {};
    }
    return (...params: unknown[]) => {
      const text = format(...params);
      writeOut(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${text}\n`);
    };
  };
  const patched = console as unknown as Record<string, unknown>;
  patched.trace = logger('TRACE');
  patched.debug = logger('DEBUG');
  patched.info = logger('INFO');
  patched.log = patched.info;
  patched.warn = logger('WARN');
  patched.error = logger('ERROR');
  patched.fatal = logger('FATAL');
}

// Error objects keep name, message and stack out of JSON.stringify, so add them.
function withErrorProperties(_key: string, value: unknown): unknown {
  if (!(value instanceof Error)) {
    return value;
  }
  const properties: Record<string, unknown> = {
    errorType: value.name,
    errorMessage: value.message,
    code: (value as { code?: unknown }).code,
    ...value,
  };
  if (typeof value.stack === 'string') {
    properties.stack = value.stack.split('\n');
  }
  return properties;
}

function logError(message: string, error: unknown): void {
  const value = error instanceof Error ? error : new Error(String(error));
  let formatted: string;
  try {
    formatted = '\t' + JSON.stringify(value, withErrorProperties);
  } catch {
    formatted = '\t' + JSON.stringify(toErrorBody(value));
  }
  console.error(message, formatted);
}

// -- the Runtime API client --------------------------------------------------

// Return an HTTP client that keeps one pooled keep-alive connection and
// reaches `host` directly. Deno reads HTTP_PROXY and NO_PROXY when it creates
// a client, and a proxy must not stand between the runtime and the local
// Runtime API, so NO_PROXY names the host while the client is created.
function createLocalClient(host: string): Deno.HttpClient | undefined {
  if (typeof Deno.createHttpClient !== 'function') {
    return undefined;
  }
  const saved = ['NO_PROXY', 'no_proxy'].map((name) => [name, Deno.env.get(name)] as const);
  try {
    for (const [name, value] of saved) {
      Deno.env.set(name, value ? `${value},${host}` : host);
    }
    return Deno.createHttpClient({ poolMaxIdlePerHost: 1 });
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) {
        Deno.env.delete(name);
      } else {
        Deno.env.set(name, value);
      }
    }
  }
}

class RuntimeClient {
  private readonly base: string;
  private readonly client: Deno.HttpClient | undefined;

  constructor(address: string) {
    this.base = `http://${address}${API_PREFIX}`;
    this.client = createLocalClient(address.slice(0, address.lastIndexOf(':')));
  }

  async nextInvocation(): Promise<Response> {
    const response = await this.request('GET', '/invocation/next');
    if (response.status !== 200) {
      const text = await response.text();
      throw new Error(`GET /invocation/next failed with ${response.status}: ${text}`);
    }
    return response;
  }

  postInvocationResponse(requestId: string, bodyText: string): Promise<void> {
    const target = `/invocation/${encodeURIComponent(requestId)}/response`;
    return this.post(target, bodyText, {});
  }

  // Like the Node.js client, send the error type in the body only.
  postInvocationError(requestId: string, error: unknown): Promise<void> {
    const target = `/invocation/${encodeURIComponent(requestId)}/error`;
    return this.post(target, JSON.stringify(toErrorBody(error)), {});
  }

  postInitError(error: unknown): Promise<void> {
    const body = toErrorBody(error);
    return this.post('/init/error', JSON.stringify(body), { [ERROR_TYPE_HEADER]: body.errorType });
  }

  private async post(target: string, bodyText: string, headers: Record<string, string>) {
    const response = await this.request('POST', target, bodyText, {
      'Content-Type': 'application/json',
      ...headers,
    });
    const text = await response.text();
    if (response.status !== 202) {
      console.error(`Runtime API POST ${target} failed with ${response.status}: ${text}`);
    }
  }

  private request(
    method: string,
    target: string,
    body?: string,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    const init: RequestInit & { client?: Deno.HttpClient } = { method, headers, body };
    if (this.client !== undefined) {
      init.client = this.client;
    }
    return fetch(this.base + target, init);
  }
}

// The Runtime API is gone, so nothing can be reported: stop the process.
function exitOnClientError(error: unknown): never {
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  writeOut(`Lambda runtime: the Runtime API request failed: ${detail}\n`);
  Deno.exit(1);
}

// -- loading the handler -----------------------------------------------------

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function joinPath(root: string, name: string): string {
  return name.startsWith('/') ? name : `${root.replace(/\/+$/, '')}/${name}`;
}

// Import the module and return the function named by a handler string such
// as `mod.handler`, `src/app.handler` or `index.nested.handler`.
async function loadHandler(appRoot: string, handlerString: string): Promise<Handler> {
  if (handlerString.includes('..')) {
    throw runtimeError(
      'MalformedHandlerName',
      `'${handlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const slash = handlerString.lastIndexOf('/');
  const moduleRoot = handlerString.slice(0, slash + 1);
  const match = handlerString.slice(slash + 1).match(/^([^.]*)\.(.*)$/);
  if (!match) {
    throw runtimeError('MalformedHandlerName', 'Bad handler');
  }
  const [, moduleName, handlerPath] = match;

  const basePath = joinPath(appRoot, moduleRoot + moduleName);
  const file = HANDLER_EXTENSIONS.map((extension) => basePath + extension).find(isFile);
  if (file === undefined) {
    const tried = HANDLER_EXTENSIONS.map((extension) => moduleName + extension).join(', ');
    throw runtimeError(
      'ImportModuleError',
      `Error: Cannot find module '${basePath}': none of ${tried} exists in ${joinPath(appRoot, moduleRoot)}`,
    );
  }

  let userModule: Record<string, unknown>;
  try {
    userModule = await import(new URL(`file://${file}`).href);
  } catch (error) {
    const text = String((error as Error)?.message ?? error);
    // Deno reports a parse error as a TypeError whose message starts with
    // "SyntaxError:", and an import it cannot find as ERR_MODULE_NOT_FOUND.
    if (error instanceof SyntaxError || text.startsWith('SyntaxError')) {
      throw runtimeError('UserCodeSyntaxError', text, error);
    }
    if ((error as { code?: string })?.code === 'ERR_MODULE_NOT_FOUND') {
      throw runtimeError('ImportModuleError', text, error);
    }
    throw error;
  }

  const handler = handlerPath
    .split('.')
    .reduce<unknown>((value, key) => (value as Record<string, unknown> | undefined)?.[key], userModule);
  if (!handler) {
    throw runtimeError('HandlerNotFound', `${handlerString} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw runtimeError('HandlerNotFound', `${handlerString} is not a function`);
  }
  return handler as Handler;
}

// -- the invocation loop -----------------------------------------------------

function parseJsonHeader(value: string | null, name: string): unknown {
  if (value === null) {
    return undefined;
  }
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new Error(`Cannot parse ${name} as json: ${error}`);
  }
}

function buildContext(headers: Headers): Context {
  const deadline = Number(headers.get('lambda-runtime-deadline-ms'));
  const env = (name: string) => Deno.env.get(name);
  return {
    functionVersion: env('AWS_LAMBDA_FUNCTION_VERSION'),
    functionName: env('AWS_LAMBDA_FUNCTION_NAME'),
    memoryLimitInMB: env('AWS_LAMBDA_FUNCTION_MEMORY_SIZE'),
    logGroupName: env('AWS_LAMBDA_LOG_GROUP_NAME'),
    logStreamName: env('AWS_LAMBDA_LOG_STREAM_NAME'),
    clientContext: parseJsonHeader(headers.get('lambda-runtime-client-context'), 'ClientContext'),
    identity: parseJsonHeader(headers.get('lambda-runtime-cognito-identity'), 'CognitoIdentity'),
    invokedFunctionArn: headers.get('lambda-runtime-invoked-function-arn') ?? undefined,
    awsRequestId: headers.get('lambda-runtime-aws-request-id') ?? '',
    tenantId: headers.get('lambda-runtime-aws-tenant-id') ?? undefined,
    // Kept for code written for Node.js; Deno has no `beforeExit` to wait on.
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
}

// The reporter of an uncaught exception or unhandled rejection. It fails
// the init before the first invocation, and the running invocation after.
let reportFatal: (error: unknown) => Promise<void>;

async function handleOnce(client: RuntimeClient, handler: Handler): Promise<void> {
  const response = await client.nextInvocation();
  const headers = response.headers;
  const requestId = headers.get('lambda-runtime-aws-request-id') ?? '';
  const body = await response.text();
  currentRequestId = requestId;
  const traceId = headers.get('lambda-runtime-trace-id');
  if (traceId) {
    Deno.env.set('_X_AMZN_TRACE_ID', traceId);
  } else {
    Deno.env.delete('_X_AMZN_TRACE_ID');
  }
  reportFatal = (error) => client.postInvocationError(requestId, error);

  let result: unknown;
  try {
    result = await handler(JSON.parse(body), buildContext(headers));
  } catch (error) {
    logError('Invoke Error', error);
    await client.postInvocationError(requestId, error);
    return;
  }

  let bodyText: string;
  try {
    bodyText = JSON.stringify(result === undefined ? null : result);
  } catch {
    const error = new Error('Unable to stringify response body');
    logError('Invoke Error', error);
    await client.postInvocationError(requestId, error);
    return;
  }
  await client.postInvocationResponse(requestId, bodyText);
}

function onFatal(message: string, error: unknown, exitCode: number): void {
  logError(message, error);
  reportFatal(error).finally(() => Deno.exit(exitCode));
}

async function main(): Promise<void> {
  patchConsole();
  const client = new RuntimeClient(Deno.env.get('AWS_LAMBDA_RUNTIME_API') ?? '');
  reportFatal = (error) => client.postInitError(error);

  globalThis.addEventListener('error', (event: ErrorEvent) => {
    event.preventDefault();
    onFatal('Uncaught Exception', event.error, EXIT_UNCAUGHT_EXCEPTION);
  });
  globalThis.addEventListener('unhandledrejection', (event: PromiseRejectionEvent) => {
    event.preventDefault();
    const error = runtimeError('UnhandledPromiseRejection', String(event.reason), event.reason);
    onFatal('Unhandled Promise Rejection', error, EXIT_UNHANDLED_REJECTION);
  });

  let handler: Handler;
  try {
    const appRoot = Deno.env.get('LAMBDA_TASK_ROOT') || Deno.cwd();
    handler = await loadHandler(appRoot, Deno.env.get('_HANDLER') ?? '');
  } catch (error) {
    onFatal('Uncaught Exception', error, EXIT_UNCAUGHT_EXCEPTION);
    return;
  }

  while (true) {
    try {
      await handleOnce(client, handler);
    } catch (error) {
      // Only a broken Runtime API connection or a bug in this runtime gets here.
      exitOnClientError(error);
    }
  }
}

main();
