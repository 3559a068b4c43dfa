"""Every user-facing string of the web settings, in English and Simplified
Chinese (the seed's own language), and the choice between them: the
visitor's switch (a cookie), else Accept-Language, else English.

One table, so a test can hold every message to having both languages and
the same ``{placeholders}`` in each.
"""

from __future__ import annotations

#: Languages offered, the default first; values of ``<html lang>``.
LANGUAGES = ("en", "zh-CN")
#: Each language's name, in itself, for the switch.
LANGUAGE_NAMES = {"en": "English", "zh-CN": "简体中文"}

#: message id -> (English, Simplified Chinese).
MESSAGES: dict[str, tuple[str, str]] = {
    # the frame of every page
    "app": ("Mail settings", "邮箱设置"),
    "language": ("Language", "语言"),
    "signed_in_as": ("Signed in as {address}", "当前登录：{address}"),
    "sign_out": ("Sign out", "退出登录"),
    "nav": ("Settings", "设置"),
    "nav_pop": ("POP access", "POP 访问"),
    "nav_app_passwords": ("App-specific passwords", "应用专用密码"),
    "nav_two_factor": ("Two-factor authentication", "双重验证"),
    "nav_clients": ("Mail client settings", "邮件客户端设置"),
    "nav_sessions": ("Signed-in browsers", "已登录的浏览器"),
    "nav_activity": ("Sign-in activity", "登录活动"),
    "nav_downloads": ("POP downloads", "POP 下载记录"),
    "nav_password": ("Password", "密码"),
    "nav_imap": ("IMAP access", "IMAP 访问"),
    "nav_api_tokens": ("API tokens", "API 令牌"),
    # errors
    "not_found_title": ("Page not found", "页面不存在"),
    "not_found": ("There is no page at this address.", "此地址没有页面。"),
    "method_title": ("Method not allowed", "不允许的请求方法"),
    "method": (
        "This page does not accept that kind of request.",
        "此页面不接受该类型的请求。",
    ),
    "forbidden_title": ("Request refused", "请求被拒绝"),
    "csrf": (
        "The form's security token is missing or no longer valid. Go back,"
        " reload the page and try again.",
        "表单的安全令牌缺失或已失效。请返回、刷新页面后重试。",
    ),
    "foreign_origin": (
        "The request came from another site, so it was not carried out.",
        "该请求来自其他网站，因此未被执行。",
    ),
    "bad_request_title": ("Invalid request", "无效的请求"),
    "bad_form": (
        "The form could not be read. Reload the page and try again.",
        "无法读取表单。请刷新页面后重试。",
    ),
    "error_title": ("Something went wrong", "出现错误"),
    "error": (
        "The request could not be completed. Nothing was changed; try again"
        " in a moment.",
        "请求未能完成，未做任何更改。请稍后重试。",
    ),
    "back": ("Back to the settings", "返回设置"),
    # forgot password (zpop.web.reset)
    "forgot_link": ("Forgot password?", "忘记密码？"),
    "forgot_title": ("Forgot password", "忘记密码"),
    "forgot_intro": (
        "Enter your email address. If the account has a recovery address, a"
        " link to set a new password is sent there; it works once, within one"
        " hour.",
        "请输入您的邮箱地址。如果该账户设置了找回邮箱，我们会向其发送一个设置新密码的"
        "链接；该链接只能使用一次，一小时内有效。",
    ),
    "forgot_button": ("Send the link", "发送链接"),
    "forgot_missing": ("Enter your email address.", "请输入您的邮箱地址。"),
    "forgot_sent": (
        "If that address has an account with a recovery address, a link to set"
        " a new password is on its way there. It works once, within one hour.",
        "如果该地址的账户设置了找回邮箱，设置新密码的链接已发往该邮箱。"
        "该链接只能使用一次，一小时内有效。",
    ),
    "reset_title": ("Set your password", "设置密码"),
    "reset_intro": (
        "Choose the new password for your account.",
        "请为您的账户设置新密码。",
    ),
    "reset_button": ("Set password", "设置密码"),
    "reset_missing": ("Enter the new password twice.", "请输入两次新密码。"),
    "reset_invalid_title": ("Link not valid", "链接无效"),
    "reset_invalid": (
        "This link is invalid or has expired. Ask for a new one.",
        "此链接无效或已过期。请重新申请。",
    ),
    "reset_done": (
        "Your password is set. Sign in with it.",
        "密码已设置。请用新密码登录。",
    ),
    # sign-in
    "login_title": ("Sign in", "登录"),
    "address": ("Email address", "邮箱地址"),
    "password": ("Password", "密码"),
    "login_button": ("Sign in", "登录"),
    "login_note": (
        "Use your account password. App-specific passwords are for mail clients only.",
        "请使用账户密码。应用专用密码仅用于邮件客户端。",
    ),
    "login_failed": (
        "The email address or password is incorrect.",
        "邮箱地址或密码不正确。",
    ),
    "login_full_address": (
        "Sign in with your full email address.",
        "请使用完整的邮箱地址登录。",
    ),
    "login_banned": (
        "Too many failed sign-ins. Try again later.",
        "登录失败次数过多，请稍后再试。",
    ),
    "login_missing": (
        "Enter your email address and password.",
        "请输入邮箱地址和密码。",
    ),
    "session_ended": (
        "Your session has ended. Sign in again.",
        "您的会话已结束，请重新登录。",
    ),
    "code_title": ("Two-factor authentication", "双重验证"),
    "code": (
        "Code from your authenticator app, or a recovery code",
        "身份验证器应用中的验证码，或恢复码",
    ),
    "code_button": ("Verify", "验证"),
    "code_wrong": (
        "That code is not valid. Sign in again and enter the current code.",
        "验证码无效。请重新登录并输入当前的验证码。",
    ),
    "code_missing": ("Enter the code.", "请输入验证码。"),
    "code_unreadable": (
        "Your two-factor settings cannot be read on this server. Ask your"
        " administrator to reset two-factor authentication for your account.",
        "此服务器无法读取您的双重验证设置。请联系管理员为您的账户重置双重验证。",
    ),
    # two-factor authentication
    "tf_intro": (
        "With two-factor authentication, signing in to these settings needs"
        " your password and a code from an authenticator app on your phone."
        " Mail clients (POP, IMAP, SMTP) then sign in with app-specific"
        " passwords only.",
        "开启双重验证后，登录这些设置需要您的密码和手机上身份验证器应用中的验证码。"
        "邮件客户端（POP、IMAP、SMTP）此后只能使用应用专用密码登录。",
    ),
    "tf_required_note": (
        "Your administrator requires two-factor authentication for this"
        " account. Set it up now to continue to your settings.",
        "管理员要求此账户开启双重验证。请立即完成设置以继续使用设置页面。",
    ),
    "tf_state": ("Two-factor authentication", "双重验证"),
    "tf_state_off": ("Off", "未开启"),
    "tf_state_required": (
        "Required by your administrator, not set up yet",
        "管理员要求开启，尚未设置",
    ),
    "tf_state_on": (
        "On (authenticator app); {left} of 10 recovery codes left",
        "已开启（身份验证器应用）；剩余 {left} 个恢复码（共 10 个）",
    ),
    "tf_enrolled_at": ("Set up on {time}.", "设置于 {time}。"),
    "tf_enrol_title": ("Set up an authenticator app", "设置身份验证器应用"),
    "tf_enrol_scan": (
        "Scan this QR code with your authenticator app (for example FreeOTP,"
        " Google Authenticator or Microsoft Authenticator).",
        "使用身份验证器应用（例如 FreeOTP、Google 身份验证器或 Microsoft"
        " Authenticator）扫描此二维码。",
    ),
    "tf_enrol_key": (
        "Or type this setup key into the app (time-based, 6 digits):",
        "或在应用中输入此设置密钥（基于时间，6 位数字）：",
    ),
    "tf_code": (
        "The 6-digit code your authenticator app shows",
        "身份验证器应用显示的 6 位验证码",
    ),
    "tf_enrol_button": ("Turn on two-factor authentication", "开启双重验证"),
    "tf_code_missing": (
        "Enter the 6-digit code your authenticator app shows.",
        "请输入身份验证器应用显示的 6 位验证码。",
    ),
    "tf_code_invalid": (
        "The code is not valid: type the 6-digit code your authenticator app"
        " shows now. Two-factor authentication is still off.",
        "验证码无效：请输入身份验证器应用当前显示的 6 位验证码。双重验证仍未开启。",
    ),
    "tf_pending_bad": (
        "This setup is no longer valid (the page is from another session or"
        " was changed). Scan the new QR code below and try again.",
        "此设置已失效（页面来自其他会话或已被修改）。请扫描下方新的二维码后重试。",
    ),
    "tf_already_on": (
        "Two-factor authentication is already on.",
        "双重验证已经开启。",
    ),
    "tf_not_on": ("Two-factor authentication is not on.", "双重验证未开启。"),
    "tf_enrolled": (
        "Two-factor authentication is on. From now on mail clients need an"
        " app-specific password.",
        "双重验证已开启。从现在起，邮件客户端需要使用应用专用密码。",
    ),
    "tf_codes_once": (
        "These are your recovery codes. Each signs in once if you lose your"
        " phone. They are shown only this once: print them or write them"
        " down now and keep them safe.",
        "以下是您的恢复码。丢失手机时，每个恢复码可用于登录一次。"
        "恢复码只显示这一次：请立即打印或抄下并妥善保管。",
    ),
    "tf_continue": ("Continue", "继续"),
    "tf_off_title": ("Turn off two-factor authentication", "关闭双重验证"),
    "tf_off_button": ("Turn off", "关闭"),
    "tf_off_missing": (
        "Enter your password and a current code (or a recovery code) to turn"
        " two-factor authentication off.",
        "请输入密码和当前验证码（或恢复码）以关闭双重验证。",
    ),
    "tf_off_required": (
        "Your administrator requires two-factor authentication for this"
        " account: it cannot be turned off.",
        "管理员要求此账户开启双重验证：无法关闭。",
    ),
    "tf_current_code_invalid": (
        "The code is not valid: type the 6-digit code your authenticator app"
        " shows now, or one of your unused recovery codes.",
        "验证码无效：请输入身份验证器应用当前显示的 6 位验证码，或一个未使用的恢复码。",
    ),
    "tf_turned_off": (
        "Two-factor authentication is off. Mail clients may use your password again.",
        "双重验证已关闭。邮件客户端可以再次使用您的密码。",
    ),
    "tf_recovery_title": ("Recovery codes", "恢复码"),
    "tf_recovery_note": (
        "New recovery codes replace all the old ones, used or not.",
        "新的恢复码将替换所有旧恢复码（无论是否已使用）。",
    ),
    "tf_recovery_button": ("Make new recovery codes", "生成新的恢复码"),
    "tf_renewed": (
        "New recovery codes were made; the old ones no longer work.",
        "已生成新的恢复码，旧恢复码不再有效。",
    ),
    "tf_unknown_action": (
        "The form asked for something this page does not do.",
        "该表单请求了此页面不支持的操作。",
    ),
    # POP access
    "pop_intro": (
        "Choose whether mail clients may download your mail with POP, which"
        " folders they see, and what happens when a client deletes a message."
        " Changes apply from a client's next connection.",
        "选择邮件客户端是否可以通过 POP 下载邮件、可以看到哪些文件夹，"
        "以及客户端删除邮件时如何处理。"
        "更改从客户端下次连接时生效。",
    ),
    "pop_status": ("POP status", "POP 状态"),
    "pop_state_disabled": ("Disabled", "已禁用"),
    "pop_state_blocked": (
        "Enabled, but not available on the Free plan: mail clients are refused",
        "已启用，但免费版不提供 POP：邮件客户端会被拒绝",
    ),
    "pop_state_all": ("Enabled for all mail", "已为所有邮件启用"),
    "pop_state_new": (
        "Enabled for mail received from now on",
        "已为从现在起收到的邮件启用",
    ),
    "pop_since": ("since {time}", "自 {time} 起"),
    "pop_from": ("mail received from {time} on", "{time} 之后收到的邮件"),
    "pop_disabled": ("Disable POP", "禁用 POP"),
    "pop_all": ("Enable POP for all mail", "为所有邮件启用 POP"),
    "pop_new": (
        "Enable POP for mail received from now on",
        "为从现在起收到的邮件启用 POP",
    ),
    "pop_blocked": (
        "POP access is not available on the Free plan for accounts created on"
        " or after {date}.",
        "免费版中，{date} 当天或之后创建的账户无法使用 POP 访问。",
    ),
    "spam": ("Spam folder", "垃圾邮件文件夹"),
    "spam_exclude": ("Inbox only (leave Spam out)", "仅收件箱（不含垃圾邮件）"),
    "spam_include": ("Inbox and Spam", "收件箱和垃圾邮件"),
    "spam_only": ("Spam only", "仅垃圾邮件"),
    "deletion": (
        "When a POP client deletes a message",
        "当 POP 客户端删除邮件时",
    ),
    "deletion_keep": ("Keep it in its folder", "保留在原文件夹中"),
    "deletion_delete": ("Move it to Trash", "移至回收站"),
    "queue": ("POP queue", "POP 队列"),
    "queue_shared": (
        "One queue for every device: a message one device deletes is not"
        " offered to the others",
        "所有设备共用一个队列：一台设备删除的邮件不再提供给其他设备",
    ),
    "queue_per_device": (
        "One queue per device: each app-specific password, and your account"
        " password, gets every message once",
        "每台设备一个队列：每个应用专用密码以及您的账户密码都会收到每封邮件一次",
    ),
    "queue_hint": (
        "With one queue per device, each device gets its own queue at its"
        " first POP connection, holding the mail the POP status above offers"
        " (or only newer mail, if its app-specific password was created that"
        " way), and a delete removes the message from that device's queue"
        " only. With “Move it to Trash” the message moves to Trash once every"
        " device that has it in its queue has deleted it (or its app-specific"
        " password is revoked).",
        "每台设备一个队列时，每台设备在第一次 POP 连接时获得自己的队列，其中包含上面的"
        " POP 状态所提供的邮件（如果其应用专用密码创建时选择了只接收新邮件，则只包含"
        "新邮件），删除只会从该设备的队列中移除邮件。选择“移至回收站”时，只有当队列中有"
        "该邮件的每台设备都已删除它（或其应用专用密码已撤销）后，邮件才会移至回收站。",
    ),
    "save": ("Save", "保存"),
    "pop_saved": (
        "Your POP settings were saved. They apply from the next POP connection.",
        "POP 设置已保存，将从下次 POP 连接时生效。",
    ),
    "missing_field": ("“{field}” is missing.", "缺少“{field}”。"),
    "invalid_choice": (
        "“{field}” must be one of the offered choices.",
        "“{field}”必须是给出的选项之一。",
    ),
    # settings API tokens
    "at_intro": (
        "Scripts change these settings through the settings API"
        " (/api/v1, described at /api/v1/openapi.json) with a token. A token"
        " never reads mail. Each is shown only once; revoke the ones you no"
        " longer use.",
        "脚本可使用令牌通过设置 API（/api/v1，说明见 /api/v1/openapi.json）"
        "更改这些设置。令牌不能读取邮件。每个令牌只显示一次；"
        "请撤销不再使用的令牌。",
    ),
    "at_scope": ("Scope", "权限"),
    "at_scope_read": ("read: look at the settings only", "只读：仅查看设置"),
    "at_scope_write": ("write: change them too", "读写：也可以更改设置"),
    "at_new": (
        "The new API token “{label}”. It is shown only once: copy it now.",
        "新的 API 令牌“{label}”。它只显示这一次：请立即复制。",
    ),
    "at_none": ("No API tokens yet.", "还没有 API 令牌。"),
    "at_revoked": ("The API token “{label}” was revoked.", "API 令牌“{label}”已撤销。"),
    "at_unknown": ("There is no such API token.", "不存在该 API 令牌。"),
    "at_bad_scope": ("Choose read or write.", "请选择只读或读写。"),
    # app-specific passwords
    "ap_intro": (
        "Mail clients (POP and SMTP) sign in with these when two-factor"
        " authentication is on. Each is shown only once; revoke the ones you no"
        " longer use.",
        "开启双重验证后，邮件客户端（POP 和 SMTP）使用这些密码登录。"
        "每个密码只显示一次；"
        "请撤销不再使用的密码。",
    ),
    "ap_label": ("Label (for example the device)", "标签（例如设备名称）"),
    "ap_create": ("Create", "创建"),
    "ap_pop_start": (
        "POP start (POP queue per device only)",
        "POP 起点（仅限每台设备一个 POP 队列）",
    ),
    "ap_pop_start_setting": (
        "The mail the POP settings offer (all mail, or mail from the moment POP"
        " was enabled)",
        "POP 设置所提供的邮件（所有邮件，或自启用 POP 起收到的邮件）",
    ),
    "ap_pop_start_first_login": (
        "Only mail that arrives after this device's first POP connection",
        "仅此设备第一次 POP 连接之后到达的邮件",
    ),
    "ap_pop_start_hint": (
        "This matters only when the POP queue is per device (see POP access):"
        " then this device gets its own queue at its first POP connection. With"
        " one shared queue every device sees the same mail.",
        "仅当 POP 队列为每台设备一个时才有作用（见“POP 访问”）：此时此设备在第一次 POP"
        " 连接时获得自己的队列。共用一个队列时，所有设备看到相同的邮件。",
    ),
    "ap_pop_start_column": ("POP start", "POP 起点"),
    "ap_pop_start_setting_short": ("as the POP settings say", "按 POP 设置"),
    "ap_pop_start_first_login_short": (
        "mail after its first POP connection",
        "第一次 POP 连接后的邮件",
    ),
    "ap_bad_pop_start": (
        "Choose one of the offered POP starts.",
        "请选择给出的 POP 起点之一。",
    ),
    "reverify": (
        "Your account password (you signed in more than 10 minutes ago)",
        "您的账户密码（您已登录超过 10 分钟）",
    ),
    "reverify_missing": (
        "Enter your account password to confirm it is you.",
        "请输入账户密码以确认是您本人。",
    ),
    "reverify_wrong": ("The password is incorrect.", "密码不正确。"),
    "ap_new": (
        "The new app-specific password for “{label}”. It is shown only once:"
        " type it into your mail client now.",
        "“{label}”的新应用专用密码。它只显示这一次：请立即将其输入邮件客户端。",
    ),
    "ap_none": ("No app-specific passwords yet.", "还没有应用专用密码。"),
    "ap_created": ("Created", "创建时间"),
    "ap_last_used": ("Last used", "上次使用"),
    "ap_never": ("never", "从未使用"),
    "ap_used_from": ("From (client address)", "来源（客户端地址）"),
    "ap_revoke": ("Revoke", "撤销"),
    "ap_revoked": (
        "The app-specific password “{label}” was revoked.",
        "应用专用密码“{label}”已撤销。",
    ),
    "ap_label_empty": ("The label is empty.", "标签为空。"),
    "ap_label_control": (
        "The label contains control characters.",
        "标签包含控制字符。",
    ),
    "ap_label_long": (
        "The label is longer than {max} characters.",
        "标签超过 {max} 个字符。",
    ),
    "ap_unknown": (
        "There is no such app-specific password.",
        "不存在该应用专用密码。",
    ),
    "ap_one_action": (
        "Send either a label to create a password or an id to revoke one.",
        "请提交标签以创建密码，或提交 ID 以撤销密码，二者选一。",
    ),
    # web sessions
    "ws_intro": (
        "The browsers signed in to these settings. Sign out the ones you do"
        " not recognise, then change your password.",
        "以下是已登录这些设置的浏览器。请退出您不认识的会话，然后更改密码。",
    ),
    "ws_started": ("Signed in", "登录时间"),
    "ws_last_seen": ("Last active", "上次活动"),
    "ws_client": ("Client address", "客户端地址"),
    "ws_browser": ("Browser", "浏览器"),
    "ws_this": ("This browser", "当前浏览器"),
    "ws_sign_out": ("Sign out", "退出"),
    "ws_unknown": (
        "There is no such session (it may have ended already).",
        "不存在该会话（可能已经结束）。",
    ),
    # sign-in activity
    "ac_intro": (
        "Your last 100 logins over every protocol, newest first. If you do"
        " not recognise one, change your password and revoke your"
        " app-specific passwords.",
        "您最近 100 次通过各种协议的登录，最新的在前。如有您不认识的登录，"
        "请更改密码并撤销应用专用密码。",
    ),
    "ac_none": ("No logins yet.", "暂无登录记录。"),
    "ac_time": ("Time (UTC)", "时间（UTC）"),
    "ac_protocol": ("Protocol", "协议"),
    "ac_client": ("Client address", "客户端地址"),
    "ac_credential": ("Credential", "凭据"),
    "ac_result": ("Result", "结果"),
    "ac_primary": ("primary password", "主密码"),
    "ac_app_password": ("app password “{label}”", "应用专用密码“{label}”"),
    "ac_second_factor": ("two-factor code", "两步验证码"),
    "ac_succeeded": ("succeeded", "成功"),
    "ac_failed": ("failed", "失败"),
    "ac_wrong_password": ("wrong password", "密码错误"),
    "ac_wrong_code": ("wrong code", "验证码错误"),
    "ac_refused": ("refused", "被拒绝"),
    # POP download log
    "dl_intro": (
        "Which device downloaded or deleted which message over POP, newest"
        " first: the last {shown} entries of the last {days} days. A device"
        " is the password it logged in with.",
        "哪台设备通过 POP 下载或删除了哪封邮件，最新的在前：最近 {days} 天内的"
        "最后 {shown} 条记录。设备以其登录所用的密码区分。",
    ),
    "dl_none": ("No POP downloads yet.", "暂无 POP 下载记录。"),
    "dl_device": ("Device", "设备"),
    "dl_message": ("Message", "邮件"),
    "dl_action": ("Action", "操作"),
    "dl_retr": ("downloaded", "已下载"),
    "dl_dele": ("deleted", "已删除"),
    # client settings
    "cl_intro": (
        "The settings to type into your mail client.",
        "在邮件客户端中填写以下设置。",
    ),
    "cl_incoming": ("Incoming mail (POP3)", "收件服务器（POP3）"),
    "cl_outgoing": ("Outgoing mail (SMTP)", "发件服务器（SMTP）"),
    "cl_server": ("Server", "服务器"),
    "cl_port": ("Port", "端口"),
    "cl_security": ("Security", "安全"),
    "cl_ssl": ("SSL/TLS (required)", "SSL/TLS（必需）"),
    "cl_smtp_port": (
        "{smtps} with SSL/TLS, or {submission} with STARTTLS",
        "{smtps}（SSL/TLS），或 {submission}（STARTTLS）",
    ),
    "cl_auth": ("Authentication", "身份验证"),
    "cl_auth_required": ("Required", "必需"),
    "cl_username": ("User name", "用户名"),
    "cl_password": ("Password", "密码"),
    "cl_pw_two_factor": (
        "An app-specific password (two-factor authentication is on)",
        "应用专用密码（已开启双重验证）",
    ),
    "cl_pw_none": (
        "An app-specific password (the account has no primary password)",
        "应用专用密码（该账户没有主密码）",
    ),
    "cl_pw_primary": ("Your account password", "您的账户密码"),
    "cl_pop_off": (
        "POP access is disabled: enable it on the POP access page first.",
        "POP 访问已禁用：请先在“POP 访问”页面启用。",
    ),
    "cl_apple_profile": (
        "Download a profile that sets up Mail on iPhone, iPad or Mac",
        "下载描述文件，在 iPhone、iPad 或 Mac 的“邮件”中自动设置",
    ),
    # /settings/apple-profile and the autoconfiguration documents
    "ap_title": ("Mail for {address}", "{address} 的邮箱"),
    "ap_description": (
        "Sets up {address} in Mail. When asked for the password, enter: {password}",
        "在“邮件”中设置 {address}。要求输入密码时，请输入：{password}",
    ),
    "ap_unavailable_title": ("No mail access to set up", "没有可设置的邮件访问"),
    "ap_unavailable": (
        "POP access is off for this account, so a mail client could not sign in."
        " Enable it on the POP access page first.",
        "该账户的 POP 访问已关闭，邮件客户端无法登录。请先在“POP 访问”页面启用。",
    ),
    "auto_enable": (
        "Enable POP access in your mail settings before a POP client connects.",
        "在 POP 客户端连接之前，请先在邮箱设置中启用 POP 访问。",
    ),
    "auto_documentation": ("POP access settings", "POP 访问设置"),
    # /settings/password and /settings/imap
    "pw_intro": (
        "Change the password you sign in with here and in mail clients. The"
        " new one needs at least {min} characters, must not contain your"
        " address and must not be a common password. App-specific passwords"
        " are not changed.",
        "修改您在此处和邮件客户端中使用的登录密码。新密码至少需要 {min}"
        " 个字符，不能包含您的邮箱地址，也不能是常见密码。"
        "应用专用密码不会改变。",
    ),
    "pw_current": ("Current password", "当前密码"),
    "pw_new": ("New password", "新密码"),
    "pw_confirm": ("New password again", "再次输入新密码"),
    "pw_change": ("Change password", "修改密码"),
    "pw_missing": (
        "Enter the current password and the new one twice.",
        "请输入当前密码，并输入两次新密码。",
    ),
    "pw_mismatch": (
        "The two new passwords are not the same.",
        "两次输入的新密码不一致。",
    ),
    "pw_control": (
        "The new password contains a control character: mail clients cannot"
        " send it.",
        "新密码包含控制字符：邮件客户端无法发送。",
    ),
    "pw_short": (
        "The new password is too short: use at least {min} characters.",
        "新密码太短：请至少使用 {min} 个字符。",
    ),
    "pw_address": (
        "The new password contains your address or the name before the @:"
        " choose one that does not.",
        "新密码包含您的邮箱地址或 @ 前面的名称：请另选一个。",
    ),
    "pw_common": (
        "The new password is one of the most common passwords: choose a less"
        " guessable one.",
        "新密码是最常见的密码之一：请选择一个更难猜到的密码。",
    ),
    "pw_wrong_current": (
        "The current password is incorrect.",
        "当前密码不正确。",
    ),
    "pw_changed": (
        "Your password was changed. Every other browser signed in to this"
        " account was signed out; this one stays signed in. Mail clients that"
        " use the old password need the new one.",
        "密码已修改。登录此账户的其他所有浏览器均已退出；当前浏览器保持登录。"
        "使用旧密码的邮件客户端需要改用新密码。",
    ),
    "imap_intro": (
        "Whether mail clients may read this account's mail over IMAP. A change"
        " takes effect at the next IMAP sign-in. This server does not serve"
        " IMAP yet: the setting is kept for when it does.",
        "是否允许邮件客户端通过 IMAP 读取此账户的邮件。更改将在下次 IMAP"
        " 登录时生效。此服务器尚未提供 IMAP：该设置会保存，供将来使用。",
    ),
    "imap_status": ("IMAP access", "IMAP 访问"),
    "imap_on": ("On", "开启"),
    "imap_off": ("Off", "关闭"),
    "imap_state_on": ("on", "已开启"),
    "imap_state_off": ("off", "已关闭"),
    "imap_saved": ("IMAP access saved.", "IMAP 访问设置已保存。"),
}


class Catalog:
    """The messages of one language: ``t("key", name=value)``."""

    def __init__(self, language: str) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}")
        self.language = language
        self._index = LANGUAGES.index(language)

    def __call__(self, key: str, **values: object) -> str:
        return MESSAGES[key][self._index].format(**values)


def _quality(text: str) -> float | None:
    try:
        q = float(text)
    except ValueError:
        return None
    return q if 0.0 <= q <= 1.0 else None


def offered(tag: str) -> str | None:
    """The language of ours a language tag asks for (any Chinese tag gets
    Simplified Chinese, the only Chinese there is), or None."""
    tag = tag.strip().lower()
    if tag == "zh" or tag.startswith("zh-"):
        return "zh-CN"
    if tag == "en" or tag.startswith("en-") or tag == "*":
        return "en"
    return None


def from_accept_language(header: str | None) -> str | None:
    """The language of ours an Accept-Language header (RFC 9110 12.5.4)
    prefers most, or None; malformed parts are skipped, ties go to the
    earlier, ``q=0`` refuses."""
    if not header:
        return None
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(header[:1024].split(",")):
        tag, _, params = part.partition(";")
        quality: float | None = 1.0
        params = params.strip()
        if params:
            name, _, value = params.partition("=")
            quality = _quality(value) if name.strip().lower() == "q" else None
        language = offered(tag)
        if language is None or quality is None or quality <= 0:
            continue
        if best is None or quality > best[0]:
            best = (quality, position, language)
    return None if best is None else best[2]


def choose(switch: str | None, accept_language: str | None) -> str:
    """The page language: the visitor's switch, else their browser's, else
    English."""
    if switch is not None and switch in LANGUAGES:
        return switch
    return from_accept_language(accept_language) or LANGUAGES[0]
