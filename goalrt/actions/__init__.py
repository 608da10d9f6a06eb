"""Built-in actions (``http.call``, ``db.query``, ``ai.call``, ``file.upload``, ...) and the plugins that add more.

A GDL action runs a built-in by naming it as its handler and giving its
arguments in a ``with`` block, checked at load against the built-in's
contract (gdl/builtin/*.gdl)::

    action order.notify(o: Order) {
      require orders.{o}.status == "shipped"
      effect  orders.{o}.notified = true
      handler http.call
      with { method = "POST"  url = "https://api.example.com/orders/{o}"
             headers = { Authorization = "Bearer {secret.API_TOKEN}" }
             json = { order = "{o}"  amount = state(orders.{o}.amount) } }
    }

A plain ``goalrt worker`` runs it: no handler code. Python goal types may use
them as steps once installed into a registry
(``default_catalog().install(registry)``). See docs/actions.md.
"""
