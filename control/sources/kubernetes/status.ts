// Validation results back onto the objects, as Istio reports them: an invalid object gets
// `status.validationMessages` (Istio's IstioStatus, with analysis message IST0106 SchemaValidationError) and
// `status.observedGeneration`, and a Warning Event naming the field and the problem (`kubectl describe` shows it);
// a fixed object's messages are cleared. What is written depends only on the object and its errors, so replicas write
// the same thing: a status that already says it is not patched again, and an Event's name is derived from its
// content, so a second replica's create is refused as already existing.
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { type CoreV1Api, type CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { type ConfigError, formatConfigError } from "../model.js";
import { describe } from "./informer.js";

/** An Istio object as the API server returns it (the parts status writing reads). */
export interface IstioObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid?: string; generation?: number; resourceVersion?: string };
  status?: { validationMessages?: unknown[]; observedGeneration?: number | string };
}

/** Istio's analysis message for a resource its schema refuses (galley/pkg/config/analysis/msg: IST0106). */
const SCHEMA_VALIDATION_ERROR = {
  type: { code: "IST0106", name: "SchemaValidationError" },
  level: "ERROR",
  documentationUrl: "https://istio.io/latest/docs/reference/config/analysis/ist0106/",
};

export class StatusWriter {
  /** Events already created (or refused as existing), so they are created once. */
  private readonly events = new Set<string>();

  constructor(
    private readonly custom: CustomObjectsApi,
    private readonly core: CoreV1Api,
    private readonly log: (line: string) => void,
  ) {}

  /** Brings the status of `object` in line with `errors` (none: valid). */
  async report(object: IstioObject, plural: string, errors: ConfigError[]): Promise<void> {
    const wanted = errors.length > 0 ? [SCHEMA_VALIDATION_ERROR] : undefined;
    const current = object.status?.validationMessages;
    const generation = object.metadata.generation;
    const same = JSON.stringify(current ?? null) === JSON.stringify(wanted ?? null) && (wanted === undefined || Number(object.status?.observedGeneration) === generation);
    const [group, version] = object.apiVersion.split("/") as [string, string];
    const { name, namespace } = object.metadata;
    if (!same) {
      try {
        await this.custom.patchNamespacedCustomObjectStatus(
          { group, version, namespace, plural, name, body: { status: { validationMessages: wanted ?? null, ...(generation !== undefined ? { observedGeneration: generation } : {}) } } },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
      } catch (error) {
        this.log(`kubernetes: cannot write the status of ${object.kind} ${namespace}/${name}: ${describe(error)}`);
      }
    }
    for (const error of errors) await this.event(object, formatConfigError({ ...error, file: "" }).replace(/^: /, ""));
  }

  private async event(object: IstioObject, message: string): Promise<void> {
    const { name, namespace, uid } = object.metadata;
    const digest = createHash("sha256").update(`${uid ?? ""}\0${object.metadata.generation ?? ""}\0${message}`).digest("hex").slice(0, 16);
    const eventName = `${name}.${digest}`;
    if (this.events.has(`${namespace}/${eventName}`)) return;
    this.events.add(`${namespace}/${eventName}`);
    const now = new Date();
    try {
      await this.core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { name: eventName, namespace },
          involvedObject: { apiVersion: object.apiVersion, kind: object.kind, name, namespace, uid, resourceVersion: object.metadata.resourceVersion },
          type: "Warning",
          reason: "SchemaValidationError",
          message,
          source: { component: "skiff" },
          reportingComponent: "skiff",
          reportingInstance: hostname(),
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (error) {
      // Another replica made it first: the same content gives the same name.
      if ((error as { code?: number }).code !== 409) this.log(`kubernetes: cannot record an event for ${object.kind} ${namespace}/${name}: ${describe(error)}`);
    }
  }
}
