"""The settings API (DESIGN §1 "Settings API"): JSON under ``/api/v1`` on
the ``web`` listener, through the same account services as the CLI and
the web pages, so no rule is written twice.

``framework`` holds the pieces every operation uses (the table entry, the
call, errors, pagination, ETags), ``user`` and ``admin`` the operations,
``schemas`` their JSON Schemas, ``openapi`` the document built from the
table, and ``resource`` the twisted.web resource that authenticates,
dispatches and answers.
"""
