DROP TABLE messages;
DROP FUNCTION touch_conversation();
DROP TABLE conversations;
DROP TABLE tasks;
