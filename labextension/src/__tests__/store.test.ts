import { afterEach, describe, expect, it, vi } from "vitest";
import { api } from "../api";
import type { DeployResult, DeploymentInfo, KeyInfo } from "../api";
import { SidebarStore } from "../sidebar/store";

// JupyterLab's notifications need a browser; the store's failures are not under test here.
vi.mock("../sidebar/notify", () => ({
  attempt: async <T>(_what: string, call: () => Promise<T>) => call(),
  reportError: () => undefined,
}));

const MINTED: KeyInfo = {
  id: "1a2b3c4d",
  prefix: "nsx_1a2b3c4d",
  name: "sidebar deploy of iris",
  scopes: ["predict:iris"],
  state: "active",
  created: 1,
  expires: null,
};

function answers(keys: KeyInfo[]) {
  vi.spyOn(api, "server").mockResolvedValue({
    grpc: null,
    home: "/tmp/home",
    pid: 1,
    running: true,
    url: "http://127.0.0.1:1",
    version: "0",
  });
  vi.spyOn(api, "deployments").mockResolvedValue([]);
  return vi.spyOn(api, "keys").mockResolvedValue(keys);
}

describe("the sidebar's key list", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("shows the key a deploy minted without a manual refresh", async () => {
    const keys = answers([MINTED]);
    const store = new SidebarStore();
    const result: DeployResult = { deployment: {} as DeploymentInfo, key: "nsx_1a2b3c4d_secret" };
    await store.deployed(result);
    expect(keys).toHaveBeenCalledOnce();
    expect(store.getState().keys).toEqual([MINTED]);
  });

  it("is not read again after a canary, which mints no key", async () => {
    const keys = answers([]);
    await new SidebarStore().deployed({ deployment: {} as DeploymentInfo, key: null });
    expect(keys).not.toHaveBeenCalled();
  });

  it("shows the keys a delete revoked", async () => {
    answers([{ ...MINTED, state: "revoked" }]);
    const store = new SidebarStore();
    await store.deleted();
    expect(store.getState().keys[0]?.state).toBe("revoked");
  });
});
