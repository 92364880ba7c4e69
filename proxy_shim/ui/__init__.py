"""The admin web page: static HTML, CSS and ES modules served by the shim at ``/ui``.

The page holds no secret and computes nothing the JSON admin API does not state: it signs in with
the master key (kept in the browser's session storage) and calls ``/customer/*``, ``/budget/*``
and ``/spend/logs`` exactly as curl does.
"""
