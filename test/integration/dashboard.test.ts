// The dashboard in a real browser: headless Chromium loads /dashboard from a node of a 3-shard cluster
// and the test reads the rendered page. Every member appears and is up; a member killed with kill -9
// turns down; a switchover shows the shard's new epoch and primary, and why and since when it serves.
// With a coordinator (etcd), the key holder's row shows its remaining lease. Chromium runs with no network but
// loopback's: background networking, sync and component updates are off.

import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { etcdUnavailable, LocalEtcd } from '../../src/harness/local-etcd.js';
import { Cluster, dataPath, request, useCluster } from '../helpers/cluster.js';
import { runFailover } from '../helpers/failover.js';
import { needsTool } from '../helpers/tool-gate.js';

const chromium = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const unavailable = existsSync(chromium) ? undefined : `${chromium} is missing (Debian package chromium)`;
const runs = needsTool('dashboard.test.ts', 'the dashboard test', unavailable);
const leaseRuns = needsTool('dashboard.test.ts', "the dashboard's lease test", unavailable ?? etcdUnavailable());

/** The flags this machine needs: root (no sandbox), no GPU, and nothing that talks to public addresses. */
const chromiumArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
];

describe.skipIf(!runs)('the dashboard in headless Chromium', () => {
  const cluster = useCluster(3);
  let browser: Browser | undefined;
  let page: Page;

  beforeAll(async () => {
    const { chromium: launcher } = await import('playwright-core');
    browser = await launcher.launch({ executablePath: chromium, headless: true, args: chromiumArgs, timeout: 60_000 });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(30_000);
  });

  afterAll(async () => {
    await browser?.close();
  });

  /** The rendered state of a member's row: data-state (up or down) and role. */
  const row = (address: string) => page.locator(`tr[data-address="${address}"]`);

  it('shows every member up, a killed member down, and a switchover with its new epoch', async () => {
    const c = cluster();
    // Some keys in every shard, written through shard2 (which forwards), so the page has data to show.
    for (let i = 0; i < 300; i++) expect((await request(`http://${c.address('shard2')}${dataPath('set', `dash-${i}`, `v${i}`)}`)).status).toBe(200);
    await page.goto(`http://${c.address('shard2')}/dashboard`);
    // Every member of the three shards appears, up, with its role.
    for (const shard of ['shard1', 'shard2', 'shard3']) {
      await expect.poll(() => row(c.address(shard, 'primary')).getAttribute('data-state'), { timeout: 30_000 }).toBe('up');
      await expect.poll(() => row(c.address(shard, 'replica')).getAttribute('data-state'), { timeout: 30_000 }).toBe('up');
      expect(await row(c.address(shard, 'primary')).getAttribute('data-role')).toBe('primary');
      expect(await row(c.address(shard, 'replica')).getAttribute('data-role')).toBe('replica');
      expect(await page.locator(`section[data-shard="${shard}"]`).getAttribute('data-epoch')).toBe('1');
    }
    expect(await page.locator('tr[data-address]').count()).toBe(6);
    // Keys are the member's own count: together the primaries hold the 300 keys written.
    const keys = await Promise.all(['shard1', 'shard2', 'shard3'].map((s) => row(c.address(s, 'primary')).locator('td').nth(4).textContent()));
    expect(keys.reduce((n, k) => n + Number(k?.replaceAll(',', '')), 0)).toBe(300);
    expect(await page.locator('tr.down').count()).toBe(0);

    // kill -9 of shard3's replica: its row turns down, and its shard stands out.
    await c.kill('shard3', 'replica');
    await expect.poll(() => row(c.address('shard3', 'replica')).getAttribute('data-state'), { timeout: 30_000 }).toBe('down');
    expect(await row(c.address('shard3', 'replica')).getAttribute('class')).toContain('down');
    expect(await page.locator('section[data-shard="shard3"]').getAttribute('class')).toContain('degraded');
    expect(await page.locator('#meta').textContent()).toContain('1 member(s) down');

    // A switchover of shard1: the page shows epoch 2 and member b as primary.
    const failover = await runFailover(c, 'shard1');
    expect(failover.code, failover.stderr).toBe(0);
    await expect.poll(() => page.locator('section[data-shard="shard1"]').getAttribute('data-epoch'), { timeout: 30_000 }).toBe('2');
    await expect.poll(() => row(c.address('shard1', 'replica')).getAttribute('data-role'), { timeout: 30_000 }).toBe('primary');
    await expect.poll(() => row(c.address('shard1', 'primary')).getAttribute('data-role'), { timeout: 30_000 }).toBe('replica');
    expect(await page.locator('section[data-shard="shard1"] .sub').textContent()).toContain(c.address('shard1', 'replica'));
    expect(await page.locator('section[data-shard="shard1"] .sub').textContent()).toMatch(/since \S+.* \(switchover\)/);
    if (process.env['KV_DASHBOARD_SCREENSHOT']) await page.screenshot({ path: process.env['KV_DASHBOARD_SCREENSHOT'], fullPage: true });
  });

  it.skipIf(!leaseRuns)("shows, with a coordinator, each key holder's remaining lease", async () => {
    const etcd = await LocalEtcd.start();
    const c = await Cluster.create(1, undefined, etcd.coordinatorToml({ leaseTtlMs: 5000 }));
    try {
      await c.startAll();
      await page.goto(`http://${c.address('shard1')}/dashboard`);
      const holder = page.locator('tr[data-lease-ms]');
      await expect.poll(() => holder.count(), { timeout: 30_000 }).toBe(1);
      expect(await holder.getAttribute('data-address')).toBe(c.address('shard1', 'primary'));
      expect(Number(await holder.getAttribute('data-lease-ms'))).toBeGreaterThan(0);
      expect(await holder.locator('td.lease').textContent()).toMatch(/^\d+\.\d s$/);
      // The replica holds no key; until its first copy is complete it says why it would not campaign.
      await expect.poll(() => row(c.address('shard1', 'replica')).locator('td.lease').textContent(), { timeout: 30_000 }).toBe('no key');
      expect(await page.locator('section[data-shard="shard1"] .sub').textContent()).toMatch(/since \S+.* \(lease expired\)/);
    } finally {
      await c.destroy();
      await etcd.close();
    }
  });
});
