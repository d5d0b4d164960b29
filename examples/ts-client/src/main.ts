// Walks one execution through the Stigmer BackendService contract, as a
// backend's user and as a runner would: stores a secret, applies an agent
// instance that references it, creates an execution, watches it, claims it,
// fetches its context (the secret resolved), completes it, and follows the
// watch to its end.
//
//   node dist/main.js --endpoint 127.0.0.1:7780 --token-file token --plaintext
//   node dist/main.js --endpoint host:7780 --token-file token --ca ca.pem
//
// It prints one line per step; secret values are never printed.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { AgentInstanceRefSchema, ApplyOutcomeSchema } from "./gen/stigmer/backend/v1/agent_instance_pb.js";
import { CapabilitySchema } from "./gen/stigmer/backend/v1/backend_info_pb.js";
import { BackendService } from "./gen/stigmer/backend/v1/backend_service_pb.js";
import { type Execution, ExecutionPhase, ExecutionPhaseSchema } from "./gen/stigmer/backend/v1/execution_pb.js";

/** The major revision this client is written for: the `v1` of the proto package. */
const CONTRACT_MAJOR = "1";
const AGENT_NAME = "ts-client-demo";
const SECRET_NAME = "TS_CLIENT_KEY";
const RUNNER_ID = "ts-client-runner";

type Backend = Client<typeof BackendService>;

function connect(endpoint: string, token: string, ca: string | undefined, plaintext: boolean): Backend {
  // Every call carries the token in the `authorization` metadata, as the contract asks.
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createGrpcTransport({
    baseUrl: `${plaintext ? "http" : "https"}://${endpoint}`,
    nodeOptions: ca === undefined ? {} : { ca: readFileSync(ca) },
    interceptors: [bearer],
    defaultTimeoutMs: 60_000,
  });
  return createClient(BackendService, transport);
}

/** The proto name of a phase, as every language's stubs print it: EXECUTION_PHASE_RUNNING. */
function phaseName(phase: ExecutionPhase): string {
  return ExecutionPhaseSchema.value[phase].name;
}

function describe(execution: Execution | undefined): string {
  if (execution?.status === undefined) {
    throw new Error("the backend returned an execution without a status");
  }
  return `v${execution.version} ${phaseName(execution.status.phase)}`;
}

async function run(backend: Backend): Promise<void> {
  const info = await backend.getBackendInfo({});
  if (!info.contractVersion.startsWith(`${CONTRACT_MAJOR}.`)) {
    throw new Error(`backend implements contract ${info.contractVersion}, this client needs ${CONTRACT_MAJOR}.x`);
  }
  const capabilities = info.capabilities.map((capability) => CapabilitySchema.value[capability].name);
  console.log(`backend: ${info.backendKind}, contract ${info.contractVersion}, capabilities [${capabilities.join(" ")}]`);

  const secretValue = randomBytes(16).toString("hex");
  const put = await backend.putSecret({ name: SECRET_NAME, value: secretValue });
  console.log(`secret: ${put.secret?.name} stored (created ${put.created})`);

  const applied = await backend.applyAgentInstance({
    name: AGENT_NAME,
    spec: {
      instructions: "Echo the input.",
      model: { provider: "ollama", model: "llama3" },
      env: [{ name: "API_KEY", value: `Bearer \${.secrets.${SECRET_NAME}}` }],
    },
  });
  console.log(`agent: ${applied.agentInstance?.name} ${ApplyOutcomeSchema.value[applied.outcome].name}`);

  const created = await backend.createExecution({
    requestId: `ts-client-${randomBytes(8).toString("hex")}`,
    agentInstance: create(AgentInstanceRefSchema, { kind: { case: "name", value: AGENT_NAME } }),
    input: { message: "hello from TypeScript" },
  });
  const execution = created.execution;
  if (execution === undefined) {
    throw new Error("CreateExecution returned no execution");
  }
  console.log(`execution: created ${created.created}, ${describe(execution)}`);

  // Watch first: the stream starts with the current state, then brings every later version.
  const watch = backend.watchExecution({ executionId: execution.id })[Symbol.asyncIterator]();
  const first = await watch.next();
  if (first.done) {
    throw new Error("WatchExecution ended before sending the current state");
  }
  console.log(`watch: ${describe(first.value.execution)}`);

  // The runner's side: claim with the version read, so a racing runner loses with ABORTED.
  const claimed = await backend.updateExecutionStatus({
    executionId: execution.id,
    phase: ExecutionPhase.RUNNING,
    runnerId: RUNNER_ID,
    expectedVersion: execution.version,
    message: "claimed",
    leaseDuration: durationFromMs(30_000),
  });
  console.log(`claim: ${describe(claimed.execution)} by ${claimed.execution?.status?.runnerId}`);

  const context = await backend.getExecutionContext({ executionId: execution.id, runnerId: RUNNER_ID });
  const resolved =
    context.environment["API_KEY"] === `Bearer ${secretValue}` && context.secrets[SECRET_NAME] === secretValue;
  const input = context.execution?.input?.message ?? "";
  console.log(
    `context: agent ${context.agentInstance?.name}, input ${JSON.stringify(input)}, ` +
      `API_KEY resolved ${resolved}, secrets given ${Object.keys(context.secrets).length}`,
  );

  const completed = await backend.updateExecutionStatus({
    executionId: execution.id,
    phase: ExecutionPhase.SUCCEEDED,
    runnerId: RUNNER_ID,
    expectedVersion: claimed.execution?.version ?? 0n,
    message: "done",
    output: { text: `echo: ${input}` },
  });
  const output = completed.execution?.status?.output?.text ?? "";
  console.log(`complete: ${describe(completed.execution)}, output ${JSON.stringify(output)}`);

  // The stream ends by itself right after the terminal state.
  for (let state = await watch.next(); !state.done; state = await watch.next()) {
    console.log(`watch: ${describe(state.value.execution)}`);
  }
  console.log("watch: ended");
}

function readToken(path: string | undefined): string {
  if (path !== undefined) {
    return readFileSync(path, "utf8").trim();
  }
  const token = process.env["STIGMER_TOKEN"];
  if (!token) {
    throw new Error("no token: give --token-file or set STIGMER_TOKEN");
  }
  return token;
}

async function main(): Promise<void> {
  // A reader that stops early (`| head`) closes the pipe: stop quietly, as command-line tools do.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") {
      process.exit(0);
    }
    throw error;
  });
  const { values } = parseArgs({
    options: {
      endpoint: { type: "string", default: "127.0.0.1:7780" },
      "token-file": { type: "string" },
      ca: { type: "string" },
      plaintext: { type: "boolean", default: false },
    },
  });
  const backend = connect(values.endpoint, readToken(values["token-file"]), values.ca, values.plaintext);
  await run(backend);
}

main().catch((error: unknown) => {
  console.error(`Error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
