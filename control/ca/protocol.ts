// Istio's CSR API, istio.v1.auth.IstioCertificateService/CreateCertificate (istio/api security/v1alpha1/ca.proto),
// which istio-agent calls on istiod: the same messages and method path, so either side can talk to Istio's. The two
// messages are declared here as a descriptor (what protoc would make of ca.proto) for @bufbuild/protobuf.
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_struct,
} from "@bufbuild/protobuf/wkt";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";

export interface CertificateRequest {
  /** PEM-encoded PKCS#10 request. */
  csr: string;
  /** Requested lifetime in seconds (0: the CA's default). */
  validity_duration?: number;
}

export interface CertificateResponse {
  /** The leaf, then intermediates, the root last (Istio: "the root cert is the last element"). */
  cert_chain: string[];
}

const field = (name: string, number: number, type: Type, label = Label.OPTIONAL, typeName?: string) => ({
  name,
  number,
  type,
  label,
  jsonName: name.replace(/_(\w)/g, (_, letter: string) => letter.toUpperCase()),
  ...(typeName ? { typeName } : {}),
});

const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "security/v1alpha1/ca.proto",
    package: "istio.v1.auth",
    dependency: ["google/protobuf/struct.proto"],
    syntax: "proto3",
    messageType: [
      {
        name: "IstioCertificateRequest",
        field: [field("csr", 1, Type.STRING), field("validity_duration", 3, Type.INT64), field("metadata", 4, Type.MESSAGE, Label.OPTIONAL, ".google.protobuf.Struct")],
      },
      { name: "IstioCertificateResponse", field: [field("cert_chain", 1, Type.STRING, Label.REPEATED)] },
    ],
  }),
  (name) => (name === file_google_protobuf_struct.proto.name ? file_google_protobuf_struct : undefined),
);
const requestType = registry.getMessage("istio.v1.auth.IstioCertificateRequest")!;
const responseType = registry.getMessage("istio.v1.auth.IstioCertificateResponse")!;

interface RequestMessage {
  csr: string;
  validityDuration: bigint;
}
interface ResponseMessage {
  certChain: string[];
}

export const certificateService = {
  CreateCertificate: {
    path: "/istio.v1.auth.IstioCertificateService/CreateCertificate",
    requestStream: false,
    responseStream: false,
    requestSerialize: (request: CertificateRequest) =>
      Buffer.from(toBinary(requestType, create(requestType, { csr: request.csr, validityDuration: BigInt(request.validity_duration ?? 0) } as never))),
    requestDeserialize: (bytes: Buffer): CertificateRequest => {
      const message = fromBinary(requestType, bytes) as unknown as RequestMessage;
      return { csr: message.csr, validity_duration: Number(message.validityDuration) };
    },
    responseSerialize: (response: CertificateResponse) => Buffer.from(toBinary(responseType, create(responseType, { certChain: response.cert_chain } as never))),
    responseDeserialize: (bytes: Buffer): CertificateResponse => ({ cert_chain: (fromBinary(responseType, bytes) as unknown as ResponseMessage).certChain }),
  } satisfies MethodDefinition<CertificateRequest, CertificateResponse>,
} satisfies ServiceDefinition;

/** The DNS name on the control plane's serving certificate, which agents check (istiod's is istiod.istio-system.svc). */
export const CONTROL_PLANE_NAME = "skiff-control-plane.skiff-system.svc";
