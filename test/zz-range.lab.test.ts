import { afterAll, beforeAll, test } from "bun:test";
import { Lab, waitFor } from "./lab/index.ts";
import { endLab, startMesh, type Mesh } from "./lab/mesh.ts";
import { ensureBinary } from "./util/run.ts";
let lab: Lab; let mesh: Mesh;
beforeAll(async () => {
  lab = await Lab.create({ name: "exrange" });
  await lab.setNatMapping("nat2", (process.env.M2 ?? "range") as never);
  await lab.setNatMapping("nat1", (process.env.M1 ?? "preserve") as never);
  await lab.addPod("edge1", "pod1", "10.244.1.0/24");
  await lab.addPod("edge2", "pod2", "10.244.2.0/24");
  mesh = startMesh(lab, { binary: await ensureBinary(), agents: [{ name: "edge1", host: "edge1" }, { name: "edge2", host: "edge2" }], podCIDRs: { edge1: ["10.244.1.0/24"], edge2: ["10.244.2.0/24"] } });
  await mesh.startAll();
}, 90_000);
afterAll(() => endLab(lab, mesh), 30_000);
test("range", async () => {
  const pinging = lab.exec("pod1", ["ping", "-c", "80", "-i", "0.1", "-W", "2", "10.244.2.2"], { timeoutMs: 20_000 });
  for (let i = 0; i < 20; i++) {
    const a = (await mesh.status<any>("edge1")).podNetwork.peers.find((p: any) => p.node === "edge2");
    const b = (await mesh.status<any>("edge2")).podNetwork.peers.find((p: any) => p.node === "edge1");
    console.log(i, a?.path, a?.lane, b?.path, b?.lane);
    await Bun.sleep(400);
  }
  console.log((await pinging).stdout.split("\n").slice(-3).join("\n"));
  console.log(mesh.logs("edge1").split("\n").filter((l) => /lane|podnet|punch|upgraded/.test(l)).join("\n"));
}, 120_000);
