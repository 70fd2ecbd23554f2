"""agentsite: a Django Channels site running a graph-of-nodes conversational agent."""
