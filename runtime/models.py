"""Django's entry to the runtime app's models (it imports `runtime.models`).

The models live in the room that owns them (`runtime.conversations.models`,
`runtime.domain.models`);
this module only makes Django see them. Import them from their room.
"""

from runtime.conversations.models import (  # noqa: F401
    Admission,
    ApiToken,
    Approval,
    ChatEvent,
    Conversation,
    Message,
    OIDCIdentity,
    Process,
    QueuedMessage,
    QuotaOwner,
    Rating,
    UserQuota,
)
from runtime.domain.models import VerifiedQuery  # noqa: F401
