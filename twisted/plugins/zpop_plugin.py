from twisted.application.service import ServiceMaker

zpop = ServiceMaker(
    "zpop",
    "zpop.tap",
    "Hosted mail: POP3 over TLS, SMTP submission and MX.",
    "zpop",
)
