// Calls the gateway with the openai npm package and prints what it got as
// one JSON line, for the Go end-to-end test to check.
// Environment: GATEWAY_URL (http://host:port), GATEWAY_KEY.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.GATEWAY_URL + "/v1",
  apiKey: process.env.GATEWAY_KEY,
  maxRetries: 0,
});

const out = {};

const completion = await client.chat.completions.create({
  model: "grok-3",
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Node asks about lighthouses." },
  ],
});
out.completion = {
  id: completion.id,
  object: completion.object,
  model: completion.model,
  content: completion.choices[0].message.content,
  finish_reason: completion.choices[0].finish_reason,
  usage: completion.usage,
};

const stream = await client.chat.completions.create({
  model: "grok-3",
  stream: true,
  stream_options: { include_usage: true },
  messages: [{ role: "user", content: "Node streams about ferries." }],
});
const ids = new Set();
let text = "";
let chunks = 0;
let finish = null;
let usage = null;
let firstRole = null;
for await (const chunk of stream) {
  chunks++;
  ids.add(chunk.id);
  if (chunk.choices.length === 0) {
    usage = chunk.usage;
    continue;
  }
  const choice = chunk.choices[0];
  if (firstRole === null) firstRole = choice.delta.role ?? "";
  text += choice.delta.content ?? "";
  if (choice.finish_reason) finish = choice.finish_reason;
}
out.stream = { ids: [...ids], text, chunks, finish, usage, first_role: firstRole };

try {
  await client.chat.completions.create({
    model: "no-such-model",
    messages: [{ role: "user", content: "hi" }],
  });
  out.error = null;
} catch (err) {
  out.error = { status: err.status, code: err.code, param: err.param, type: err.type };
}

console.log(JSON.stringify(out));
