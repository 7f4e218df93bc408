// Runs N requests of one benchmark module through the bench host and exits: the program valgrind counts
// instructions of (instructions.ts). Usage: drive.ts <variant> <requests>
import { wasmPath } from "./build.js";
import { GuestHost } from "./guest-host.js";

const [variant, requests] = process.argv.slice(2);
const host = new GuestHost(wasmPath(variant));
for (let i = 0; i < Number(requests); i++) host.request();
