// Renders Foxglove Studio (the `App` of @foxglove/studio-base 1.48.0, MPL-2.0, loaded by
// index.html as the globals of its UMD bundle) the way its own web build does, but with
// nothing kept across runs: the app configuration lives in memory, and so does the layout
// storage, which holds one layout, "botbus-plot": a Plot panel of
// /robot/demo/battery.voltage (the `botbus demo` robot's battery) against receive time,
// following the last 30 s. The only data source is the Foxglove WebSocket one; the query
// string picks it and the layout (see index.html), as Studio's own deep links do.
// tests/foxglove.rs screenshots this page with tests/foxglove/screenshot.mjs.

(async function () {
  "use strict";

  const LAYOUT_ID = "botbus-plot";
  const PLOT = "Plot!botbus";

  /** Studio's IAppConfiguration, in memory. */
  class MemoryConfig {
    constructor(values) {
      this.values = new Map(Object.entries(values || {}));
      this.listeners = new Map();
    }
    get(key) {
      return this.values.get(key);
    }
    async set(key, value) {
      this.values.set(key, value);
      for (const cb of this.listeners.get(key) || []) cb(value);
    }
    addChangeListener(key, cb) {
      if (!this.listeners.has(key)) this.listeners.set(key, []);
      this.listeners.get(key).push(cb);
    }
    removeChangeListener(key, cb) {
      const list = this.listeners.get(key) || [];
      const i = list.indexOf(cb);
      if (i >= 0) list.splice(i, 1);
    }
  }

  /** Studio's ILayoutStorage, in memory, holding the botbus-plot layout. */
  class MemoryLayouts {
    constructor() {
      this.namespaces = new Map();
      const data = {
        configById: {
          [PLOT]: {
            paths: [
              {
                value: "/robot/demo/battery.voltage",
                enabled: true,
                timestampMethod: "receiveTime",
              },
            ],
            showLegend: true,
            isSynced: true,
            xAxisVal: "timestamp",
            followingViewWidth: 30,
          },
        },
        globalVariables: {},
        userNodes: {},
        playbackConfig: { speed: 1 },
        layout: PLOT,
      };
      this.namespace("local").set(LAYOUT_ID, {
        id: LAYOUT_ID,
        name: "botbus plot",
        permission: "CREATOR_WRITE",
        baseline: { data, savedAt: new Date().toISOString() },
        working: undefined,
        syncInfo: undefined,
      });
    }
    namespace(name) {
      if (!this.namespaces.has(name)) this.namespaces.set(name, new Map());
      return this.namespaces.get(name);
    }
    async list(ns) {
      return [...this.namespace(ns).values()];
    }
    async get(ns, id) {
      return this.namespace(ns).get(id);
    }
    async put(ns, layout) {
      this.namespace(ns).set(layout.id, layout);
      return layout;
    }
    async delete(ns, id) {
      this.namespace(ns).delete(id);
    }
    async importLayouts() {}
  }

  try {
    installDevtoolsFormatters();
    overwriteFetch();
    await waitForFonts();
    await initI18n();
    const app = React.createElement(App, {
      deepLinks: [window.location.href],
      dataSources: [new FoxgloveWebSocketDataSourceFactory()],
      appConfiguration: new MemoryConfig({}),
      layoutStorage: new MemoryLayouts(),
      extensionLoaders: [],
      enableGlobalCss: true,
      enableLaunchPreferenceScreen: false,
    });
    ReactDOM.render(app, document.getElementById("root"));
  } catch (e) {
    console.error("botbus: cannot render Foxglove Studio:", (e && e.stack) || e);
    document.body.insertAdjacentText("afterbegin", "botbus: cannot render Foxglove Studio: " + e);
  }
})();
