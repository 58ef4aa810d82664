// Keeps hole-punch attempts alive through gateways that answer an unsolicited
// SYN with ICMP unreachable (commands.ts punchIcmpRuleset says why). One
// filter chain, jumped to first from INPUT; removed on stop and, left by a
// run that died, at start. Without iptables (or rights) punching still works,
// each refused SYN sent again (hole-punch.ts), only less often direct.
import { punchIcmpRuleset } from "../proxier/commands.ts";
import { createExec, type Exec } from "../proxier/exec.ts";
import { Iptables, type ChainJump } from "../proxier/iptables.ts";
import type { Logger } from "../../log.ts";

export const CHAIN_PUNCH = "EDGEMESH-PUNCH";
const JUMP: ChainJump = { table: "filter", from: "INPUT", to: CHAIN_PUNCH, comment: "edgemesh: hole punching through gateways that refuse with ICMP" };

export class PunchIcmpFilter {
  private readonly ipt: Iptables;
  private installed = false;

  constructor(
    private readonly port: number,
    private readonly log: Logger,
    opts: { exec?: Exec; iptables?: string } = {},
  ) {
    this.ipt = new Iptables({ exec: opts.exec ?? createExec(), ...(opts.iptables ? { iptables: opts.iptables } : {}) });
  }

  /** installs the chain and its jump; false (logged) when iptables refuses */
  async install(): Promise<boolean> {
    try {
      await this.remove(true);
      await this.ipt.apply(punchIcmpRuleset(CHAIN_PUNCH, this.port));
      await this.ipt.insertJumps([JUMP]);
      this.installed = true;
      this.log.info("punch filter installed: ICMP unreachables about TCP from the tunnel port are dropped", { chain: CHAIN_PUNCH, port: this.port });
      return true;
    } catch (err) {
      this.log.warn("punch filter not installed: gateways that answer with ICMP will make fewer punches direct", { error: (err as Error).message });
      return false;
    }
  }

  get active(): boolean {
    return this.installed;
  }

  /** removes every jump to our chain and the chain (`stale`: left by an earlier run) */
  async remove(stale = false): Promise<void> {
    if (!stale && !this.installed) return;
    this.installed = false;
    const removed = await this.ipt.removeChains([JUMP], { filter: [CHAIN_PUNCH] });
    if (stale && removed.jumps + removed.chains > 0) this.log.warn("removed a punch filter left by an earlier run", removed);
  }
}
