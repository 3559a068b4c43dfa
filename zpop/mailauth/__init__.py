"""Mail authentication and spam filtering (DESIGN §1 "Mail authentication
and spam filtering"): DKIM signing of the mail that leaves (``dkim``);
on the MX, SPF, DKIM and DMARC checks of the mail that arrives
(``inbound``, over ``dns``) and the rspamd spam filter (``rspamd``), each
deciding before the ``250`` (``verdict``)."""
