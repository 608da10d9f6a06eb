"""Goals: the clients that submit and inspect them, the registry of goal types and actions, waits and retries."""
