"""The self-service web settings (DESIGN §1 "Self-service web settings"):
the HTTPS ``web`` listener's site, its security plumbing, message catalog
and pages. A protocol layer: pages parse a form, call one service of
``zpop.accounts`` and render its result or its domain error; nothing here
reaches the store but through those services."""
