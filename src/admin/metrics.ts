// A small Prometheus text-format registry: counters and gauges with labels,
// plus collectors that compute values at scrape time (RSS, module states).
type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  values: Map<string, { labels: Labels; value: number }>;
}

export interface Sample {
  labels?: Labels;
  value: number;
}

function labelKey(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(",");
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function renderLabels(labels: Labels | undefined): string {
  if (!labels || Object.keys(labels).length === 0) return "";
  return `{${Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(",")}}`;
}

export class Metrics {
  private readonly families = new Map<string, Family>();
  private readonly collectors: Array<{ name: string; help: string; type: "counter" | "gauge"; collect: () => Sample[] }> = [];

  constructor(private readonly prefix = "edgemesh_") {}

  private family(name: string, help: string, type: "counter" | "gauge"): Family {
    const full = this.prefix + name;
    let f = this.families.get(full);
    if (!f) {
      f = { name: full, help, type, values: new Map() };
      this.families.set(full, f);
    }
    return f;
  }

  counter(name: string, help: string) {
    const f = this.family(name, help, "counter");
    return {
      inc: (labels: Labels = {}, by = 1) => {
        const key = labelKey(labels);
        const cur = f.values.get(key);
        if (cur) cur.value += by;
        else f.values.set(key, { labels, value: by });
      },
      get: (labels: Labels = {}) => f.values.get(labelKey(labels))?.value ?? 0,
    };
  }

  gauge(name: string, help: string) {
    const f = this.family(name, help, "gauge");
    return {
      set: (labels: Labels, value: number) => f.values.set(labelKey(labels), { labels, value }),
      get: (labels: Labels = {}) => f.values.get(labelKey(labels))?.value ?? 0,
    };
  }

  /** a metric whose samples are computed when scraped */
  collect(name: string, help: string, type: "counter" | "gauge", collect: () => Sample[]): void {
    this.collectors.push({ name: this.prefix + name, help, type, collect });
  }

  render(): string {
    const out: string[] = [];
    for (const f of this.families.values()) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      for (const v of f.values.values()) out.push(`${f.name}${renderLabels(v.labels)} ${v.value}`);
    }
    for (const c of this.collectors) {
      out.push(`# HELP ${c.name} ${c.help}`, `# TYPE ${c.name} ${c.type}`);
      for (const s of c.collect()) out.push(`${c.name}${renderLabels(s.labels)} ${s.value}`);
    }
    return out.join("\n") + "\n";
  }
}
