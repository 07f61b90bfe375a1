// Validates Kubernetes custom resources against their CRD's OpenAPI schema, as the API server
// would: the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1), from the schema
// that @kubernetes-models/prometheus-operator generates from the operator's CRDs.
//   node check.mjs < documents.json      (a JSON array of resources)
// Prints one line per resource ("ok KIND/NAME" or "unchecked KIND/NAME: …") and exits 1 on the
// first invalid one, with the schema's errors. Used by engine/tests/it/deploy/helm.rs.
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const input = await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
});
let failed = false;
for (const doc of JSON.parse(input)) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  const Model = doc.apiVersion === "monitoring.coreos.com/v1" ? monitoring[doc.kind] : undefined;
  if (!Model) {
    console.log(`unchecked ${name}: no CRD schema here for ${doc.apiVersion}`);
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    console.log(`invalid ${name}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
