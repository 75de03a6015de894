// Starts GraphiQL on the page wxunion serves on GET /graphql. A file of its own (not an
// inline script) so that the page's Content-Security-Policy can say script-src 'self'.
//
// URL parameters fill the editors and follow them as you type, so a link can carry a
// query: /graphql?query=...&variables=...&operationName=... Headers never go into the URL
// (they carry bearer tokens).
(function () {
  'use strict';

  var params = new URLSearchParams(window.location.search);

  function remember(name, value) {
    if (value) {
      params.set(name, value);
    } else {
      params.delete(name);
    }
    var search = params.toString();
    window.history.replaceState(null, '', window.location.pathname + (search ? '?' + search : ''));
  }

  // The server names its endpoint in <meta name="graphql-endpoint">.
  var endpoint = document.querySelector('meta[name="graphql-endpoint"]');
  var url = new URL(endpoint ? endpoint.content : '/graphql', window.location.href);
  var fetcher = GraphiQL.createFetcher({ url: url.href });

  var props = {
    fetcher: fetcher,
    // Users paste {"Authorization": "Bearer ..."} here; not kept in localStorage.
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
    defaultEditorToolsVisibility: true,
    onEditQuery: function (v) { remember('query', v); },
    onEditVariables: function (v) { remember('variables', v); },
    onEditOperationName: function (v) { remember('operationName', v); },
  };
  ['query', 'variables', 'operationName'].forEach(function (name) {
    if (params.has(name)) {
      props[name] = params.get(name);
    }
  });
  // The documentation explorer is open on a first visit; afterwards GraphiQL remembers
  // whether the user closed it.
  if (window.localStorage && window.localStorage.getItem('graphiql:visiblePlugin') === null) {
    props.visiblePlugin = GraphiQL.React.DOC_EXPLORER_PLUGIN;
  }

  var root = document.getElementById('graphiql');
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, props));
})();
